// cvllm public API: include this one header.
#pragma once

#include "cvllm/beam_search.h"
#include "cvllm/engine_args.h"
#include "cvllm/errors.h"
#include "cvllm/llm.h"
#include "cvllm/outputs.h"
#include "cvllm/sampling_params.h"
