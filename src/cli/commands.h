// The cvllm subcommands. Each returns the process exit code.
#pragma once

#include <set>
#include <string>

#include "cli/flags.h"
#include "cvllm/engine_args.h"

namespace cvllm::cli {

int run_generate(int argc, char** argv);
int run_tokenize(int argc, char** argv);
int run_bench(int argc, char** argv);
int run_serve(int argc, char** argv);        // cmd_serve.cpp
int run_bench_serve(int argc, char** argv);  // cmd_bench_serve.cpp
int run_chat(int argc, char** argv);         // cmd_chat.cpp
int run_render(int argc, char** argv);       // cmd_render.cpp

// Flags every engine-loading subcommand accepts (model, limits, threads, kernels).
std::set<std::string> engine_value_flags();
std::set<std::string> engine_bool_flags();
EngineArgs engine_args_from_flags(const Flags& flags);

}  // namespace cvllm::cli
