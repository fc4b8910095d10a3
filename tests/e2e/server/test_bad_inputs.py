"""Every class of malformed request gets the right 4xx with vLLM's error body, and the server stays
up: malformed JSON, wrong JSON types, out-of-range numbers, empty prompts, invalid UTF-8,
pathological nesting, oversize bodies, broken HTTP. After each case /health must still answer 200.
"""
import json
import socket
import urllib.request

import pytest

from conftest import CHATML, TINY_MODEL, Server, post_json

CMPL = "/v1/completions"
CHAT = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server():
    s = Server([TINY_MODEL, "--chat-template", CHATML, "--max-request-body-bytes", "1000000",
                "--disable-log-stats"])
    yield s
    assert s.stop() == 0


def healthy(server):
    with urllib.request.urlopen(server.url + "/health", timeout=10) as r:
        return r.status == 200


def check_error(status, body, expected_status, param=None):
    assert status == expected_status, body
    assert set(body) == {"error"}, body
    err = body["error"]
    assert list(err) == ["message", "type", "param", "code"]
    assert err["code"] == expected_status
    assert isinstance(err["message"], str) and err["message"]
    if expected_status == 400:
        assert err["type"] == "BadRequestError"
    if param is not None:
        assert err["param"] == param, err


# (path, raw body, expected status, expected param or None)
RAW_BODIES = [
    (CMPL, b"", 400, None),
    (CMPL, b"{", 400, None),
    (CMPL, b'{"prompt": "x",}', 400, None),
    (CMPL, b"[1, 2, 3]", 400, None),
    (CMPL, b'"just a string"', 400, None),
    (CMPL, b"null", 400, None),
    (CMPL, b"42", 400, None),
    (CMPL, b'{"prompt": "\xff\xfe invalid utf-8"}', 400, None),
    (CMPL, b'{"prompt": "ok"} trailing', 400, None),
    (CMPL, b"[" * 100000, 400, None),
    (CMPL, b'{"a":' * 5000 + b"1" + b"}" * 5000, 400, None),
    (CHAT, b'{"messages": [{"role": "user", "content": "\xc3\x28"}]}', 400, None),
]


@pytest.mark.parametrize("path,body,status,param", RAW_BODIES)
def test_malformed_bodies(server, path, body, status, param):
    code, resp = post_json(server.url + path, body)
    check_error(code, resp, status, param)
    assert healthy(server)


# Completions fields: (extra fields, expected status, expected param)
COMPLETION_CASES = [
    ({}, 400, "prompt"),  # no prompt at all
    ({"prompt": ""}, 400, "prompt"),
    ({"prompt": []}, 400, "prompt"),
    ({"prompt": [[]]}, 400, None),
    ({"prompt": 5}, 400, "prompt"),
    ({"prompt": {"text": "x"}}, 400, "prompt"),
    ({"prompt": [1, "a"]}, 400, "prompt"),
    ({"prompt": ["a", [1]]}, 400, "prompt"),
    ({"prompt": [-1]}, 400, "prompt"),
    ({"prompt": [2 ** 40]}, 400, "prompt"),
    ({"prompt": [1, 2, 100000]}, 400, None),  # out of the vocabulary
    ({"prompt": "x" * 2000}, 400, "input_tokens"),  # longer than max_model_len
    ({"prompt": "x", "max_tokens": "abc"}, 400, "max_tokens"),
    ({"prompt": "x", "max_tokens": [1]}, 400, "max_tokens"),
    ({"prompt": "x", "max_tokens": 1.5}, 400, "max_tokens"),
    ({"prompt": "x", "max_tokens": 1e30}, 400, "max_tokens"),
    ({"prompt": "x", "max_tokens": 2 ** 70}, 400, "max_tokens"),
    ({"prompt": "x", "max_tokens": -1}, 400, "max_tokens"),
    ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": "x", "max_tokens": 100000}, 400, "max_tokens"),
    ({"prompt": "x", "n": "two"}, 400, "n"),
    ({"prompt": "x", "n": 0}, 400, None),
    ({"prompt": "x", "n": 10 ** 12}, 400, "n"),
    ({"prompt": "x", "n": 2, "temperature": 0}, 400, None),
    ({"prompt": "x", "temperature": "hot"}, 400, "temperature"),
    ({"prompt": "x", "temperature": -0.5}, 400, None),
    ({"prompt": "x", "temperature": 1e308, "top_p": 0}, 400, None),
    ({"prompt": "x", "top_p": 0}, 400, None),
    ({"prompt": "x", "top_p": 1.5}, 400, None),
    ({"prompt": "x", "top_k": -5}, 400, None),
    ({"prompt": "x", "top_k": 10 ** 12}, 400, "top_k"),
    ({"prompt": "x", "min_p": 2}, 400, None),
    ({"prompt": "x", "presence_penalty": 5}, 400, None),
    ({"prompt": "x", "frequency_penalty": -5}, 400, None),
    ({"prompt": "x", "repetition_penalty": 0}, 400, None),
    ({"prompt": "x", "seed": 1.5}, 400, "seed"),
    ({"prompt": "x", "seed": 2 ** 64}, 400, "seed"),
    ({"prompt": "x", "stop": 5}, 400, "stop"),
    ({"prompt": "x", "stop": [1]}, 400, None),
    ({"prompt": "x", "stop": [""]}, 400, None),
    ({"prompt": "x", "stop_token_ids": [99999]}, 400, None),
    ({"prompt": "x", "stop_token_ids": ["a"]}, 400, None),
    ({"prompt": "x", "bad_words": [""]}, 400, None),
    ({"prompt": "x", "bad_words": "word"}, 400, "bad_words"),
    ({"prompt": "x", "logit_bias": [1]}, 400, "logit_bias"),
    ({"prompt": "x", "logit_bias": {"abc": 1}}, 400, "logit_bias"),
    ({"prompt": "x", "logit_bias": {"99999": 1}}, 400, None),
    ({"prompt": "x", "logit_bias": {"5": "up"}}, 400, None),
    ({"prompt": "x", "allowed_token_ids": []}, 400, None),
    ({"prompt": "x", "allowed_token_ids": [99999]}, 400, None),
    ({"prompt": "x", "min_tokens": 20, "max_tokens": 10}, 400, None),
    ({"prompt": "x", "min_tokens": -1}, 400, None),
    ({"prompt": "x", "logprobs": -5}, 400, "logprobs"),
    ({"prompt": "x", "logprobs": "3"}, 400, "logprobs"),
    ({"prompt": "x", "logprobs": 21}, 400, None),  # above --max-logprobs (20)
    ({"prompt": "x", "logprobs": -1}, 400, None),  # the whole vocabulary (300) is above it too
    ({"prompt": "x", "prompt_logprobs": -1}, 400, None),
    ({"prompt": "x", "prompt_logprobs": 1, "stream": True}, 400, "prompt_logprobs"),
    ({"prompt": "x", "stream": "maybe"}, 400, "stream"),
    ({"prompt": "x", "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ({"prompt": "x", "stream": True, "stream_options": "yes"}, 400, "stream_options"),
    ({"prompt": "x", "echo": {"a": 1}}, 400, "echo"),
    ({"prompt": "x", "truncate_prompt_tokens": -5}, 400, "truncate_prompt_tokens"),
    ({"prompt": "x", "truncate_prompt_tokens": 10000}, 400, "truncate_prompt_tokens"),
    ({"prompt": "x", "priority": 1}, 400, "priority"),
    ({"prompt": "x", "cache_salt": ""}, 400, "cache_salt"),
    ({"prompt": "x", "use_beam_search": True, "stream": True}, 400, "use_beam_search"),
    ({"prompt": "x", "use_beam_search": True, "n": 0}, 400, None),
    ({"prompt": "x", "response_format": {"type": "json_object"}}, 400, "response_format"),
    ({"prompt": "x", "response_format": {"type": "bogus"}}, 400, "response_format"),
    ({"prompt": "x", "structured_outputs": {"regex": "a+"}}, 400, "structured_outputs"),
    ({"prompt": "x", "suffix": 5}, 400, "suffix"),
    ({"prompt": "x", "model": "nope"}, 404, "model"),
    ({"prompt": "x", "model": 5}, 400, "model"),
]


@pytest.mark.parametrize("fields,status,param", COMPLETION_CASES, ids=[json.dumps(c[0])[:60] for c in COMPLETION_CASES])
def test_completion_field_errors(server, fields, status, param):
    code, resp = post_json(server.url + CMPL, fields)
    check_error(code, resp, status, param)
    assert healthy(server)


CHAT_CASES = [
    ({}, 400, "messages"),
    ({"messages": "hi"}, 400, "messages"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [1]}, 400, "messages"),
    ({"messages": [{"content": "no role"}]}, 400, "messages"),
    ({"messages": [{"role": 5, "content": "x"}]}, 400, "messages"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "messages"),
    ({"messages": [{"role": "user", "content": [5]}]}, 400, "messages"),
    ({"messages": MSGS, "max_completion_tokens": -3}, 400, "max_completion_tokens"),
    ({"messages": MSGS, "max_tokens": "x"}, 400, "max_tokens"),
    ({"messages": MSGS, "max_tokens": 1000}, 400, "max_completion_tokens"),
    ({"messages": MSGS, "logprobs": "yes please"}, 400, "logprobs"),
    ({"messages": MSGS, "top_logprobs": 2}, 400, "top_logprobs"),
    ({"messages": MSGS, "logprobs": True, "top_logprobs": -7}, 400, "top_logprobs"),
    ({"messages": MSGS, "logprobs": True, "top_logprobs": 50}, 400, None),
    ({"messages": MSGS, "logprobs": True, "top_logprobs": -1}, 400, None),
    ({"messages": MSGS, "tools": []}, 400, "tools"),
    ({"messages": MSGS, "tools": [1]}, 400, "tools"),
    ({"messages": MSGS, "tools": [{"type": "function"}]}, 400, "tools"),
    ({"messages": MSGS, "tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tool_choice"),
    ({"messages": MSGS, "tool_choice": "required"}, 400, "tool_choice"),
    ({"messages": MSGS, "tool_choice": 5}, 400, "tool_choice"),
    ({"messages": MSGS, "response_format": {"type": "json_schema"}}, 400, "response_format"),
    ({"messages": MSGS, "response_format": {"type": "json_object"}}, 400, "response_format"),
    ({"messages": MSGS, "chat_template": "{{ 1 }}"}, 400, "chat_template"),
    ({"messages": MSGS, "chat_template_kwargs": [1]}, 400, "chat_template_kwargs"),
    ({"messages": MSGS, "chat_template_kwargs": {"tokenize": True}}, 400, "chat_template_kwargs"),
    ({"messages": MSGS, "add_generation_prompt": True, "continue_final_message": True}, 400,
     "continue_final_message"),
    ({"messages": [{"role": "user", "content": "x" * 5000}]}, 400, "input_tokens"),
    ({"messages": MSGS, "temperature": -1}, 400, None),
    ({"messages": MSGS, "n": 3, "temperature": 0}, 400, None),
    ({"messages": MSGS, "model": "nope"}, 404, "model"),
]


@pytest.mark.parametrize("fields,status,param", CHAT_CASES, ids=[json.dumps(c[0])[:60] for c in CHAT_CASES])
def test_chat_field_errors(server, fields, status, param):
    code, resp = post_json(server.url + CHAT, fields)
    check_error(code, resp, status, param)
    assert healthy(server)


@pytest.mark.parametrize("path,body,status", [
    ("/tokenize", {}, 400),
    ("/tokenize", {"prompt": 5}, 400),
    ("/tokenize", {"messages": "x"}, 400),
    ("/tokenize", {"prompt": "x", "model": "nope"}, 404),
    ("/detokenize", {}, 400),
    ("/detokenize", {"tokens": "abc"}, 400),
    ("/detokenize", {"tokens": [1, 99999]}, 400),
    ("/detokenize", {"tokens": [-1]}, 400),
    ("/v1/completions/render", {"prompt": ""}, 400),
    ("/v1/chat/completions/render", {"messages": []}, 400),
])
def test_tokenize_errors(server, path, body, status):
    code, resp = post_json(server.url + path, body)
    check_error(code, resp, status)
    assert healthy(server)


def test_duplicate_keys_keep_last_value(server):
    raw = b'{"prompt": "x", "max_tokens": 100000, "max_tokens": 2, "temperature": 0}'
    code, resp = post_json(server.url + CMPL, raw)
    assert code == 200, resp
    assert resp["usage"]["completion_tokens"] == 2


def test_many_keys_is_fast(server):
    body = b'{"prompt": "x", "max_tokens": 1, ' + b",".join(b'"k%d": %d' % (i, i) for i in range(60000)) + b"}"
    code, resp = post_json(server.url + CMPL, body, timeout=20)
    assert code == 200, resp


def test_oversize_body_is_413(server):
    code, resp = post_json(server.url + CMPL, {"prompt": "x" * 2_000_000})
    check_error(code, resp, 413)
    assert healthy(server)


def test_unknown_path_and_method(server):
    code, resp = post_json(server.url + "/v1/nothing-here", {"a": 1})
    check_error(code, resp, 404)
    req = urllib.request.Request(server.url + CMPL, method="GET")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("GET /v1/completions should fail")
    except urllib.error.HTTPError as e:
        assert e.code in (404, 405)
    assert healthy(server)


def raw_http(server, payload: bytes, half_close=True) -> bytes:
    """Sends raw bytes; half_close ends the sending side (a client that leaves, to the server)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(payload)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


@pytest.mark.parametrize("payload", [
    b"GARBAGE\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\":",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n",
    b"\x00\x01\x02\xff\xfe\r\n\r\n",
])
def test_broken_http_does_not_crash(server, payload):
    raw_http(server, payload)  # whatever the answer (or none), the server must survive
    assert healthy(server)


def test_chunked_request_body_works(server):
    body = json.dumps({"prompt": "x", "max_tokens": 2, "temperature": 0}).encode()
    payload = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
               b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    reply = raw_http(server, payload, half_close=False)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
