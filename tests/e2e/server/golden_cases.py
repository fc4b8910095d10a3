"""Request -> response golden cases for the server, shared by scripts/gen_server_goldens.py (which
writes tests/e2e/server/golden/*.json) and test_golden.py (which replays them).

Responses are compared after masking what changes between runs (ids, timestamps). Every object in
a response must also have exactly the fields vLLM's pydantic models dump, in their order
(VLLM_KEYS, transcribed from vllm/entrypoints/openai/{completion,chat_completion}/protocol.py and
serve/engine/protocol.py), so a golden cannot drift from vLLM's shape unnoticed.
"""
import json
import re
import urllib.request

# Each case: name, HTTP method, path, body (None for GET), stream (SSE) or not.
CASES = [
    ("models", "GET", "/v1/models", None),
    ("version", "GET", "/version", None),
    ("completion_greedy", "POST", "/v1/completions",
     {"model": "tiny", "prompt": "Hello world", "max_tokens": 6, "temperature": 0}),
    ("completion_token_prompt_return_ids", "POST", "/v1/completions",
     {"model": "tiny", "prompt": [75, 104, 111], "max_tokens": 3, "temperature": 0, "return_token_ids": True}),
    ("completion_logprobs_echo", "POST", "/v1/completions",
     {"model": "tiny", "prompt": "abc", "max_tokens": 3, "temperature": 0, "logprobs": 2, "echo": True}),
    ("completion_stop", "POST", "/v1/completions",
     {"model": "tiny", "prompt": "Hello world", "max_tokens": 6, "temperature": 0, "stop": ["@@"]}),
    ("completion_seeded_n2", "POST", "/v1/completions",
     {"model": "tiny", "prompt": "seed", "max_tokens": 4, "temperature": 0.9, "seed": 11, "n": 2}),
    ("completion_stream_usage", "POST", "/v1/completions",
     {"model": "tiny", "prompt": "Hello world", "max_tokens": 5, "temperature": 0, "stream": True,
      "stream_options": {"include_usage": True}}),
    ("completion_stream_logprobs", "POST", "/v1/completions",
     {"model": "tiny", "prompt": "xyz", "max_tokens": 3, "temperature": 0, "stream": True, "logprobs": 1}),
    ("completion_stream_echo_continuous_usage", "POST", "/v1/completions",
     {"model": "tiny", "prompt": "xyz", "max_tokens": 2, "temperature": 0, "stream": True, "echo": True,
      "stream_options": {"include_usage": True, "continuous_usage_stats": True}}),
    ("chat_greedy", "POST", "/v1/chat/completions",
     {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 0}),
    ("chat_logprobs", "POST", "/v1/chat/completions",
     {"model": "tiny", "messages": [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Hi"}],
      "max_completion_tokens": 3, "temperature": 0, "logprobs": True, "top_logprobs": 2}),
    ("chat_stream_usage", "POST", "/v1/chat/completions",
     {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0,
      "stream": True, "stream_options": {"include_usage": True}}),
    ("chat_stream_echo_continue", "POST", "/v1/chat/completions",
     {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure"}],
      "max_tokens": 3, "temperature": 0, "stream": True, "echo": True, "add_generation_prompt": False,
      "continue_final_message": True}),
    ("chat_render", "POST", "/v1/chat/completions/render",
     {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 0}),
    ("completion_render", "POST", "/v1/completions/render",
     {"model": "tiny", "prompt": ["ab", "cd"], "max_tokens": 2}),
    ("tokenize_prompt", "POST", "/tokenize", {"prompt": "Hello world", "return_token_strs": True}),
    ("tokenize_chat", "POST", "/tokenize", {"messages": [{"role": "user", "content": "Hi"}]}),
    ("detokenize", "POST", "/detokenize", {"tokens": [75, 104, 111, 111, 114]}),
    ("error_bad_type", "POST", "/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": "many"}),
    ("error_context_length", "POST", "/v1/completions", {"model": "tiny", "prompt": "x" * 300}),
    ("error_unknown_model", "POST", "/v1/chat/completions",
     {"model": "gpt-4", "messages": [{"role": "user", "content": "Hi"}]}),
    ("error_not_found_path", "POST", "/v1/embeddings", {"input": "x"}),
]

# Fields vLLM dumps, in order, for each kind of object (None: any keys, e.g. dicts keyed by token).
VLLM_KEYS = {
    "completion": ["id", "object", "created", "model", "choices", "service_tier", "system_fingerprint", "usage",
                   "kv_transfer_params"],
    "completion_choice": ["index", "text", "logprobs", "finish_reason", "stop_reason", "token_ids",
                          "prompt_logprobs", "prompt_token_ids"],
    "completion_chunk": ["id", "object", "created", "model", "choices"],
    "completion_chunk_choice": ["index", "text", "logprobs", "finish_reason", "stop_reason", "prompt_token_ids",
                                "token_ids"],
    "completion_logprobs": ["text_offset", "token_logprobs", "tokens", "top_logprobs"],
    "chat": ["id", "object", "created", "model", "choices", "service_tier", "system_fingerprint", "usage",
             "prompt_logprobs", "prompt_token_ids", "kv_transfer_params"],
    "chat_choice": ["index", "message", "logprobs", "finish_reason", "stop_reason", "token_ids"],
    "chat_message": ["role", "content", "refusal", "annotations", "audio", "function_call", "reasoning"],
    "chat_logprobs": ["content"],
    "chat_logprob_content": ["token", "logprob", "bytes", "top_logprobs"],
    "chat_top_logprob": ["token", "logprob", "bytes"],
    "usage": ["prompt_tokens", "total_tokens", "completion_tokens", "prompt_tokens_details"],
    "usage_stream": ["prompt_tokens", "total_tokens", "completion_tokens"],
    "error": ["error"],
    "error_info": ["message", "type", "param", "code"],
}


def check_vllm_shape(name, path, payload, stream):
    """Asserts every object has vLLM's fields in vLLM's order."""
    def keys(obj, kind):
        assert list(obj) == VLLM_KEYS[kind], f"{name}: {kind} keys {list(obj)} != vLLM's {VLLM_KEYS[kind]}"

    if isinstance(payload, dict) and "error" in payload:
        keys(payload, "error")
        keys(payload["error"], "error_info")
        return
    if path == "/v1/completions":
        for item in payload if stream else [payload]:
            if stream:
                assert list(item)[:5] == VLLM_KEYS["completion_chunk"], (name, list(item))
                extra = list(item)[5:]
                assert extra in ([], ["usage"]), (name, extra)
                for c in item["choices"]:
                    assert list(c) == VLLM_KEYS["completion_chunk_choice"], (name, list(c))
                    if c["logprobs"] is not None:
                        keys(c["logprobs"], "completion_logprobs")
                if "usage" in item:
                    assert list(item["usage"]) == VLLM_KEYS["usage_stream"]
            else:
                keys(item, "completion")
                keys(item["usage"], "usage")
                for c in item["choices"]:
                    keys(c, "completion_choice")
                    if c["logprobs"] is not None:
                        keys(c["logprobs"], "completion_logprobs")
    elif path == "/v1/chat/completions":
        for item in payload if stream else [payload]:
            if stream:
                assert list(item)[:5] == VLLM_KEYS["completion_chunk"], (name, list(item))
                assert list(item)[5:] in ([], ["usage"], ["prompt_token_ids"], ["usage", "prompt_token_ids"])
                for c in item["choices"]:
                    base = ["index", "delta", "logprobs", "finish_reason"]
                    assert list(c) in (base, base + ["token_ids"], base + ["stop_reason", "token_ids"]), list(c)
                    assert set(c["delta"]) <= {"role", "content"}
            else:
                keys(item, "chat")
                keys(item["usage"], "usage")
                for c in item["choices"]:
                    keys(c, "chat_choice")
                    keys(c["message"], "chat_message")
                    if c["logprobs"] is not None:
                        keys(c["logprobs"], "chat_logprobs")
                        for lp in c["logprobs"]["content"]:
                            keys(lp, "chat_logprob_content")
                            for t in lp["top_logprobs"]:
                                keys(t, "chat_top_logprob")


def fetch(base_url, method, path, body):
    """Runs one case; returns (status, parsed JSON or list of SSE events)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, ctype, raw = r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        status, ctype, raw = e.code, e.headers.get("Content-Type", ""), e.read().decode()
    if ctype.startswith("text/event-stream"):
        events = []
        for block in raw.split("\n\n"):
            if block:
                assert block.startswith("data: "), block
                payload = block[len("data: "):]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
        return status, events
    return status, json.loads(raw)


_ID = re.compile(r"^(cmpl|chatcmpl|modelperm)-[0-9a-f]{32}(-\d+)?$")


def mask(value, key=None):
    """Replaces what differs between runs: ids and creation timestamps."""
    if isinstance(value, dict):
        return {k: mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if key in ("id", "request_id") and isinstance(value, str) and _ID.match(value):
        return f"<{_ID.match(value).group(1)}-id>"
    if key == "created" and isinstance(value, int):
        return "<created>"
    return value


def run_case(base_url, case):
    name, method, path, body = case
    status, payload = fetch(base_url, method, path, body)
    stream = isinstance(payload, list) and payload and payload[-1] == "[DONE]"
    if stream:
        ids = {e["id"] for e in payload[:-1]}
        created = {e["created"] for e in payload[:-1]}
        assert len(ids) == 1 and len(created) == 1, f"{name}: one id and timestamp per stream"
        check_vllm_shape(name, path, payload[:-1], True)
    else:
        check_vllm_shape(name, path, payload, False)
    return {"name": name, "method": method, "path": path, "request": body, "status": status,
            "response": mask(payload)}
