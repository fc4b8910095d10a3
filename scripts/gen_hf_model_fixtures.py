#!/usr/bin/env python3
"""Tiny random-weight Hugging Face checkpoints (safetensors) and their reference outputs from
transformers, for tests/golden/test_model_hf.cpp.

Writes tests/golden/data/hf/<name>/ (config.json, model.safetensors or shards + index,
generation_config.json; one also has a tokenizer) and tests/golden/data/hf/<name>.json with, per
prompt of token ids: the logits of the last position, the top-5 logprobs at every position, and a
greedy continuation (argmax, fed back, full forward each step) with the top-5 logprobs of each step.

The reference model is loaded back from the saved directory in float32 with eager attention, so
it computes with exactly the weights on disk (bf16/f16 values upcast exactly).

With --fuzz-corpus it writes the seed corpus of tests/fuzz/fuzz_safetensors.cpp instead: a first
byte picking the parser (0 safetensors file, 1 index, 2 config.json, 3 generation_config.json),
then the input; a few tiny valid and invalid inputs of each.

Usage: python3 scripts/gen_hf_model_fixtures.py [--out-dir DIR] [--only NAME] [--fuzz-corpus]
Deterministic: fixed seeds, one torch thread, no timestamps.
"""
import argparse
import json
import os
import platform
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import (AutoModelForCausalLM, Gemma3Config, Gemma3TextConfig, GenerationConfig,
                          GPT2Config, LlamaConfig, MistralConfig, OPTConfig, Phi3Config,
                          Qwen2Config, Qwen3Config)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_K = 5
NUM_NEW_TOKENS = 8
PROMPT_LENGTHS = [1, 7, 19]  # 19 + 8 new tokens: past Mistral's window of 8 and a 16-token block
EMBEDDING_STD = 0.5          # logits of a few units: clear greedy margins


def base(**overrides):
    kw = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=256, max_position_embeddings=128,
              rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    kw.update(overrides)
    return kw


def opt_base(**overrides):
    kw = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, ffn_dim=128,
              num_attention_heads=4, max_position_embeddings=128, word_embed_proj_dim=64,
              activation_function="relu", pad_token_id=1, bos_token_id=2, eos_token_id=2)
    kw.update(overrides)
    return kw


def gemma3_mm(**top):
    """Gemma3ForConditionalGeneration (as Gemma 3 4B/12B/27B) with gemma3_f32's text decoder and
    the smallest SigLIP vision tower transformers builds (1 layer, width 8, one 8x8 image of four
    4x4 patches). Default image/boi/eoi token ids (262144, 255999, 256000) lie outside the vocab of
    256, so no prompt token is an image token."""
    text = VARIANTS["gemma3_f32"][0]().to_dict()
    vision = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=1,
                  image_size=8, patch_size=4)
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, **top)


# transformers 5's module names for Gemma3ForConditionalGeneration (its save_pretrained still
# writes the older "language_model.model.*" that the hub's checkpoints have).
GEMMA3_MM_MODULE_NAMES = {"language_model.model.": "model.language_model.",
                          "language_model.lm_head.": "lm_head.",
                          "vision_tower.": "model.vision_tower.",
                          "multi_modal_projector.": "model.multi_modal_projector."}

# name -> (config, dtype of the saved weights, save options)
VARIANTS = {
    # Explicit head_dim (16) != hidden / heads (12), Llama 3 rope scaling, untied, float32.
    "llama_f32": (lambda: LlamaConfig(**base(
        hidden_size=48, head_dim=16, intermediate_size=96,
        rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 32})),
        torch.float32, {}),
    # The same model saved in shards of ~100 KB (model.safetensors.index.json).
    "llama_f32_sharded": (None, torch.float32, {"max_shard_size": "100KB"}),
    # bfloat16 weights, tied LM head, linear rope scaling.
    "llama_bf16_tied": (lambda: LlamaConfig(**base(
        tie_word_embeddings=True, rope_scaling={"rope_type": "linear", "factor": 2.0})),
        torch.bfloat16, {}),
    # Sliding window of 8 on every layer; the long prompt and its continuation go past it.
    "mistral_swa": (lambda: MistralConfig(**base(
        hidden_size=48, head_dim=16, intermediate_size=96, sliding_window=8,
        tie_word_embeddings=True, rope_theta=1000.0)),
        torch.float32, {}),
    # q/k/v biases, tied, float32, a generation_config with sampling defaults and two EOS ids.
    # It also has a byte-level BPE tokenizer (tokenizer.json) and a chat template.
    "qwen2_f32": (lambda: Qwen2Config(**base(intermediate_size=64, tie_word_embeddings=True,
                                             vocab_size=320, rope_theta=1000000.0)),
                  torch.float32, {}),
    # Per-head q/k RMSNorm, explicit head_dim, float16 weights, untied.
    "qwen3_f16": (lambda: Qwen3Config(**base(head_dim=16)), torch.float16, {}),
    # OPT as opt-125m: pre-LN with a final LayerNorm, ReLU, biases, learned positions (offset 2),
    # tied LM head (no lm_head.weight in the file).
    "opt_f32": (lambda: OPTConfig(**opt_base()), torch.float32, {}),
    # OPT as opt-350m: post-LN, no final LayerNorm, word_embed_proj_dim 32 < hidden 64 with
    # project_in/project_out, bfloat16 weights.
    "opt_post_ln_bf16": (lambda: OPTConfig(**opt_base(do_layer_norm_before=False,
                                                      word_embed_proj_dim=32)),
                         torch.bfloat16, {}),
    # OPT without biases (enable_bias false) and LayerNorms without weight/bias
    # (layer_norm_elementwise_affine false), float16 weights.
    "opt_plain_f16": (lambda: OPTConfig(**opt_base(enable_bias=False,
                                                   layer_norm_elementwise_affine=False)),
                      torch.float16, {}),
    # GPT-2: Conv1D weights stored [in, out], fused c_attn, gelu_new, learned positions (no
    # offset), tied LM head, n_inner left null (4 * n_embd), float16 weights.
    "gpt2_f16": (lambda: GPT2Config(vocab_size=300, n_embd=64, n_layer=2, n_head=4,
                                    n_positions=128, n_inner=None, activation_function="gelu_new",
                                    layer_norm_epsilon=1e-5, bos_token_id=2, eos_token_id=2),
                 torch.float16, {}),
    # Phi-3: fused qkv_proj (GQA: q 64 + k 32 + v 32 rows) and gate_up_proj, partial rotary
    # (half of each head), a sliding window of 10 (Phi-3-mini-4k has 2047), untied, bfloat16.
    "phi3_bf16": (lambda: Phi3Config(**base(partial_rotary_factor=0.5, sliding_window=10,
                                            rope_theta=1000.0, pad_token_id=0)),
                  torch.bfloat16, {}),
    # Gemma 3: sandwich norms scaled by (1 + w), q/k norms, GELU-tanh MLP, embeddings times
    # sqrt(hidden), query_pre_attn_scalar 16 (= head_dim, as the GGUF copy assumes), layers
    # local, local, global, local (sliding_window_pattern 3) with a window of 6, local RoPE base
    # 100 and global base 10000 with linear scaling, tied, float32. Has a GGUF copy.
    "gemma3_f32": (lambda: Gemma3TextConfig(**base(
        hidden_size=48, head_dim=16, intermediate_size=96, num_hidden_layers=4,
        tie_word_embeddings=True, query_pre_attn_scalar=16, sliding_window=6,
        sliding_window_pattern=3, rope_local_base_freq=100.0, rope_theta=10000.0,
        rope_scaling={"rope_type": "linear", "factor": 2.0})),
        torch.float32, {}),
    # Gemma 3 in bfloat16, untied, a global first layer, query_pre_attn_scalar 40 != head_dim,
    # final logit soft-capping at 4 (raw logits reach ~±2.5, where tanh already bends them by
    # ~0.2), and attn_logit_softcapping 1, which transformers' Gemma3Attention ignores (so must
    # we). sqrt(48) = 6.928 becomes 6.9375 in bfloat16, which is what transformers multiplies by
    # in the checkpoint's dtype.
    "gemma3_bf16_softcap": (lambda: Gemma3TextConfig(**base(
        hidden_size=48, head_dim=16, intermediate_size=96, num_hidden_layers=3,
        query_pre_attn_scalar=40, sliding_window=5,
        layer_types=["full_attention", "sliding_attention", "sliding_attention"],
        final_logit_softcapping=4.0, attn_logit_softcapping=1.0)),
        torch.bfloat16, {}),
    # Gemma3ForConditionalGeneration, tied, float32, under the names save_pretrained writes
    # ("language_model.model.*", plus "vision_tower.*" and "multi_modal_projector.*"). The
    # reference runs the whole class on token ids (no images).
    "gemma3_mm_f32": (lambda: gemma3_mm(), torch.float32, {}),
    # The same class untied by the top-level tie_word_embeddings (text_config keeps its true: the
    # top-level one is what transformers ties by), re-saved under transformers 5's module names
    # ("model.language_model.*", "lm_head.weight").
    "gemma3_mm_untied_f32": (lambda: gemma3_mm(tie_word_embeddings=False), torch.float32,
                             {"renames": GEMMA3_MM_MODULE_NAMES}),
    # Re-saves under the base model's names, as the original facebook/opt-* ("decoder.*") and
    # openai-community/gpt2 ("h.0.*", "wte.weight") files have them.
    "opt_f32_bare": (None, torch.float32, {"strip_prefix": "model."}),
    "gpt2_f16_bare": (None, torch.float16, {"strip_prefix": "transformer."}),
}


def f32(x):
    """float32 value as the shortest decimal that reads back to the same float32."""
    return float(str(np.float32(x)))


def top_k_entries(logprobs):  # [vocab_size]
    values, indices = torch.topk(logprobs, TOP_K)
    return [[int(i), f32(x)] for i, x in zip(indices.tolist(), values.tolist())]


GPT2_CONV1D = {"c_attn", "c_proj", "c_fc"}


def randomize(model, seed):
    """Weights of a visible size: matrices ~ N(0, 1/in), embeddings ~ N(0, EMBEDDING_STD^2),
    norm scales in [0.8, 1.2], biases ~ N(0, 0.1^2) (transformers would start norms at 1 and
    biases at 0, which would leave them untested)."""
    g = torch.Generator().manual_seed(seed)
    # Gemma 3 scales its norms by (1 + w), so w around 0 gives the same [0.8, 1.2]; it multiplies
    # embeddings by sqrt(hidden_size), so a smaller table keeps them from swamping the layers (a
    # model that only repeats its last token would not test attention).
    gemma = model.config.model_type in ("gemma3_text", "gemma3")
    norm_low = -0.2 if gemma else 0.8
    embedding_std = EMBEDDING_STD / 4 if gemma else EMBEDDING_STD
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight") or ".ln_" in name or "ln_f." in name:
                p.copy_(torch.rand(p.shape, generator=g) * 0.4 + norm_low)
            elif name.endswith("bias"):  # also SigLIP's in_proj_bias
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif p.dim() == 1:  # SigLIP's layer_norm1/2 weights
                p.copy_(torch.rand(p.shape, generator=g) * 0.4 + 0.8)
            elif "embed_tokens" in name or ".wte." in name or name == "lm_head.weight":
                p.copy_(torch.randn(p.shape, generator=g) * embedding_std)
            else:  # GPT-2's Conv1D stores [in, out]; every other matrix [out, in]
                fan_in = p.shape[0] if name.split(".")[-2] in GPT2_CONV1D else p.shape[1]
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)


@torch.no_grad()
def reference(model, prompts):
    out = []
    for ids in prompts:
        logits = model(torch.tensor([ids])).logits[0].float()  # [T, vocab]
        logprobs = torch.log_softmax(logits, dim=-1)
        entry = {"token_ids": ids,
                 "last_logits": [f32(x) for x in logits[-1].tolist()],
                 "top5": [top_k_entries(row) for row in logprobs]}
        seq = list(ids)
        greedy, greedy_top5, margins = [], [], []
        for _ in range(NUM_NEW_TOKENS):
            lp = torch.log_softmax(model(torch.tensor([seq])).logits[0, -1].float(), dim=-1)
            top2 = torch.topk(lp, 2).values
            margins.append(float(top2[0] - top2[1]))
            tok = int(torch.argmax(lp))
            greedy.append(tok)
            greedy_top5.append(top_k_entries(lp))
            seq.append(tok)
        entry.update(greedy_token_ids=greedy, greedy_top5=greedy_top5,
                     greedy_min_margin=f32(min(margins)))
        out.append(entry)
    return out


# GGUF copies of the Qwen checkpoints: the same weights under llama.cpp's names and keys, Q/K rows
# as they are (llama.cpp's converter permutes them for Llama only; Qwen keeps rotate-half RoPE).
# They share their HF twin's reference JSON.
GGUF_COPIES = {"qwen2_f32": "qwen2", "qwen3_f16": "qwen3", "gemma3_f32": "gemma3"}
GGUF_BLOCK_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down"}


# Gemma 3's sandwich norms under llama.cpp's names (its "ffn_norm" is the pre-feedforward norm).
GEMMA3_BLOCK_NAMES = {**GGUF_BLOCK_NAMES, "post_attention_layernorm": "post_attention_norm",
                      "pre_feedforward_layernorm": "ffn_norm",
                      "post_feedforward_layernorm": "post_ffw_norm"}


def gguf_name(hf_name, block_names=GGUF_BLOCK_NAMES):
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    if hf_name in top:
        return top[hf_name]
    parts = hf_name.split(".")  # model.layers.N.<module...>.<weight|bias>
    return f"blk.{parts[2]}.{block_names['.'.join(parts[3:-1])]}.{parts[-1]}"


def write_gguf(path, arch, config, state_dict):
    import gguf
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny {arch}")
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_key_length(config.head_dim if hasattr(config, "head_dim") and config.head_dim
                     else config.hidden_size // config.num_attention_heads)
    gemma3 = arch == "gemma3"
    if gemma3:  # the keys llama.cpp's converter writes, plus the layer pattern and local base
        rope = config.rope_parameters["full_attention"]
        w.add_rope_freq_base(rope["rope_theta"])
        w.add_sliding_window(config.sliding_window)
        w.add_sliding_window_pattern([t == "sliding_attention" for t in config.layer_types])
        w.add_rope_freq_base_swa(config.rope_parameters["sliding_attention"]["rope_theta"])
        if rope.get("rope_type") == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(rope["factor"])
    else:
        w.add_rope_freq_base(config.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_vocab_size(config.vocab_size)
    for name, t in state_dict.items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        t = t.detach()
        # Norms and biases in f32 (as llama.cpp writes them), matrices in their stored dtype.
        if t.dim() == 1 or t.dtype == torch.bfloat16:
            t = t.float()
        if gemma3 and name.endswith("norm.weight"):
            t = t + 1  # llama.cpp's converter stores Gemma's (1 + w) norm scales
        w.add_tensor(gguf_name(name, GEMMA3_BLOCK_NAMES if gemma3 else GGUF_BLOCK_NAMES), t.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def add_tokenizer(out):
    """A byte-level BPE tokenizer trained on a few sentences (vocab 320 = the model's), with a
    chat template, so the engine's text path runs on an HF directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = ["The quick brown fox jumps over the lazy dog.", "Hello, world!"] * 4
    tok.train_from_iterator(text, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                          "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>"
                          "assistant\n{% endif %}")
    fast.save_pretrained(out)
    samples = ["Hello, world!", "The lazy fox", "<|im_start|>user\nHi<|im_end|>"]
    return {"vocab_size": tok.get_vocab_size(),
            "eos_token_id": fast.eos_token_id,
            "encodings": [{"text": s, "token_ids": fast(s)["input_ids"]} for s in samples]}


def generate(name, out_dir):
    make_config, dtype, save_kw = VARIANTS[name]
    source = name
    if make_config is None:  # a re-save of another variant
        source = name.replace("_sharded", "").replace("_bare", "")
        make_config = VARIANTS[source][0]
    torch.manual_seed(0)
    config = make_config()
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    randomize(model, seed=sum(map(ord, source)))
    model = model.to(dtype)
    path = os.path.join(out_dir, name)
    shutil.rmtree(path, ignore_errors=True)
    save_kw = dict(save_kw)
    strip_prefix = save_kw.pop("strip_prefix", None)
    renames = {strip_prefix: ""} if strip_prefix else save_kw.pop("renames", None)
    model.save_pretrained(path, **save_kw)
    extra = {}
    if name == "qwen2_f32":
        extra["tokenizer"] = add_tokenizer(path)

    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    ref.eval()
    if isinstance(config, Gemma3TextConfig) and dtype != torch.float32:
        # Gemma 3 multiplies embeddings by sqrt(hidden) cast to the weights' dtype; run in the
        # checkpoint's own dtype that is the rounded value. Keep it while computing in float32.
        scale = ref.model.embed_tokens.embed_scale
        scale.fill_(torch.tensor(config.hidden_size ** 0.5).to(dtype).float())
        extra["embed_scale"] = f32(scale)
    rng = np.random.default_rng(1234)
    vocab_size = config.get_text_config().vocab_size
    prompts = [[int(x) for x in rng.integers(3, vocab_size, n)] for n in PROMPT_LENGTHS]
    fixture = {
        "generator": "scripts/gen_hf_model_fixtures.py",
        "checkpoint": f"hf/{name}",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "weights_dtype": str(dtype).replace("torch.", ""),
        "reference_dtype": "float32", "attn_implementation": "eager",
        "num_new_tokens": NUM_NEW_TOKENS, "top_k": TOP_K,
        **extra,
        "prompts": reference(ref, prompts),
    }
    if name == "qwen2_f32":
        # Sampling defaults and two EOS ids; the second is a token the first prompt's greedy
        # continuation reaches after a few steps, so the test sees generation stop there.
        first = fixture["prompts"][0]["greedy_token_ids"]
        stop = next(t for t in first[1:] if t != first[0])
        GenerationConfig(do_sample=True, temperature=0.7, top_p=0.8, top_k=20,
                         repetition_penalty=1.05, bos_token_id=1,
                         eos_token_id=[2, stop]).save_pretrained(path)
        fixture["generation_eos_token_ids"] = [2, stop]
    if name in GGUF_COPIES:
        write_gguf(os.path.join(out_dir, name + ".gguf"), GGUF_COPIES[name], ref.config,
                   AutoModelForCausalLM.from_pretrained(path, dtype=dtype).state_dict())
    if renames:  # after the reference ran on the file transformers wrote
        from safetensors.torch import load_file, save_file
        st = os.path.join(path, "model.safetensors")
        tensors = load_file(st)
        save_file({rename_prefix(k, renames): v for k, v in tensors.items()}, st,
                  metadata={"format": "pt"})
    for f in os.listdir(path):  # save_pretrained makes the weights owner-only
        os.chmod(os.path.join(path, f), 0o644)
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(path, p)) for p in os.listdir(path))
    print(f"{name}: {size / 1024:.0f} KB checkpoint, min greedy margin "
          f"{min(p['greedy_min_margin'] for p in fixture['prompts']):.3f}")


def rename_prefix(name, renames):
    for old, new in renames.items():
        if name.startswith(old):
            return new + name[len(old):]
    return name


# Gemma3ForConditionalGeneration config.json files that leave text_config's keys to
# Gemma3TextConfig's defaults, as the hub's do: Gemma 3 4B's and 27B's text_config, and none at
# all. Written with what transformers resolves them to.
GEMMA3_MM_SPARSE_CONFIGS = {
    "4b": {"text_config": {"hidden_size": 2560, "intermediate_size": 10240,
                           "model_type": "gemma3_text", "num_hidden_layers": 34,
                           "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                           "sliding_window": 1024}},
    "27b": {"text_config": {"head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504,
                            "model_type": "gemma3_text", "num_attention_heads": 32,
                            "num_hidden_layers": 62, "num_key_value_heads": 16,
                            "query_pre_attn_scalar": 168,
                            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                            "sliding_window": 1024}},
    "no_text_config": {},
}


def write_gemma3_mm_config_defaults(out_dir):
    cases = []
    for name, extra in GEMMA3_MM_SPARSE_CONFIGS.items():
        config_json = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
                       **extra}
        config = Gemma3Config.from_dict(config_json)
        t = config.text_config
        full, local = t.rope_parameters["full_attention"], t.rope_parameters["sliding_attention"]
        resolved = {k: getattr(t, k) for k in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
            "rms_norm_eps", "query_pre_attn_scalar", "sliding_window", "layer_types",
            "final_logit_softcapping", "hidden_activation")}
        resolved.update(tie_word_embeddings=config.tie_word_embeddings,
                        rope_theta=full["rope_theta"], rope_type=full.get("rope_type", "default"),
                        rope_factor=full.get("factor", 1.0),
                        rope_local_base_freq=local["rope_theta"])
        cases.append({"name": name, "config": config_json, "resolved": resolved})
    with open(os.path.join(out_dir, "gemma3_mm_config_defaults.json"), "w") as f:
        json.dump({"generator": "scripts/gen_hf_model_fixtures.py",
                   "transformers": transformers.__version__, "cases": cases}, f, indent=1)
        f.write("\n")


def safetensors_bytes(header, data):
    text = json.dumps(header, separators=(",", ":"))
    text += " " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text.encode() + data


def write_fuzz_corpus(out_dir):
    f32 = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32).tobytes()
    seeds = {
        "valid.st": (0, safetensors_bytes(
            {"__metadata__": {"format": "pt"},
             "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
             "b": {"dtype": "BF16", "shape": [2], "data_offsets": [16, 20]},
             "c": {"dtype": "F16", "shape": [0], "data_offsets": [20, 20]}}, f32 + b"\x80\x3f\x00\x40")),
        "bad_dtype.st": (0, safetensors_bytes(
            {"a": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}, f32 * 2)),
        "overlap.st": (0, safetensors_bytes(
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, f32)),
        "index.json": (1, json.dumps({"metadata": {"total_size": 4},
                                      "weight_map": {"x": "model-00001-of-00001.safetensors"}}).encode()),
    }
    hf = os.path.join(ROOT, "tests/golden/data/hf")
    for name, mode, file in [("config_llama.json", 2, "llama_f32/config.json"),
                             ("config_qwen2.json", 2, "qwen2_f32/config.json"),
                             ("config_mistral.json", 2, "mistral_swa/config.json"),
                             ("config_opt.json", 2, "opt_post_ln_bf16/config.json"),
                             ("config_gpt2.json", 2, "gpt2_f16/config.json"),
                             ("config_phi3.json", 2, "phi3_bf16/config.json"),
                             ("config_gemma3.json", 2, "gemma3_bf16_softcap/config.json"),
                             ("generation.json", 3, "qwen2_f32/generation_config.json")]:
        with open(os.path.join(hf, file), "rb") as f:
            seeds[name] = (mode, f.read())
    os.makedirs(out_dir, exist_ok=True)
    for name, (mode, data) in seeds.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(bytes([mode]) + data)
    print(f"{len(seeds)} seeds in {out_dir}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "tests/golden/data/hf"))
    ap.add_argument("--only")
    ap.add_argument("--fuzz-corpus", action="store_true")
    args = ap.parse_args()
    if args.fuzz_corpus:
        write_fuzz_corpus(os.path.join(ROOT, "tests/fuzz/corpus/safetensors"))
        return
    torch.set_num_threads(1)
    os.makedirs(args.out_dir, exist_ok=True)
    for name in VARIANTS:
        if args.only is None or args.only == name:
            generate(name, args.out_dir)
    if args.only is None or args.only == "gemma3_mm_config_defaults":
        write_gemma3_mm_config_defaults(args.out_dir)


if __name__ == "__main__":
    sys.exit(main())
