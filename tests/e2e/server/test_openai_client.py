"""The server as the official `openai` client sees it: models, completions and chat (streaming
and not), n > 1, logprobs, stop strings, seeds, usage, and errors raised as the client's exception
types. Generated text is checked against `cvllm generate` (the offline engine) on the same model.
"""
import json
import subprocess

import openai
import pytest

from conftest import TINY_MODEL, Server, cvllm_binary, post_json


@pytest.fixture(scope="module")
def client(tiny_server):
    return openai.OpenAI(base_url=tiny_server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def offline_greedy(prompt, max_tokens):
    """What the offline engine generates for a greedy request (the reference for server output)."""
    out = subprocess.run([cvllm_binary(), "generate", "--model", str(TINY_MODEL), "--prompt", prompt,
                          "--temperature", "0", "--max-tokens", str(max_tokens), "--output-json"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]


def test_models_list(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny", "tiny-alias"]
    for m in models.data:
        assert m.object == "model"
        assert m.owned_by == "vllm"
        assert m.model_extra["max_model_len"] == 256
        assert m.model_extra["root"] == str(TINY_MODEL)


def test_completion_matches_offline_engine(client):
    ref = offline_greedy("Hello world", 8)
    resp = client.completions.create(model="tiny", prompt="Hello world", max_tokens=8, temperature=0)
    assert resp.object == "text_completion"
    assert resp.id.startswith("cmpl-")
    assert resp.model == "tiny"
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.text == ref["outputs"][0]["text"]
    assert choice.finish_reason == ref["outputs"][0]["finish_reason"]
    assert resp.usage.prompt_tokens == len(ref["prompt_token_ids"])
    assert resp.usage.completion_tokens == len(ref["outputs"][0]["token_ids"])
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_alias_model_name_and_no_model(client, tiny_server):
    a = client.completions.create(model="tiny-alias", prompt="abc", max_tokens=3, temperature=0)
    assert a.model == "tiny"  # responses name the first served name
    status, body = post_json(tiny_server.url + "/v1/completions",
                             {"prompt": "abc", "max_tokens": 3, "temperature": 0})
    assert status == 200 and body["choices"][0]["text"] == a.choices[0].text


def test_completion_stream_equals_non_stream(client):
    kwargs = dict(model="tiny", prompt="The quick brown fox", max_tokens=12, temperature=0)
    full = client.completions.create(**kwargs)
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.completion_tokens == full.usage.completion_tokens
    assert usage_chunk.usage.prompt_tokens == full.usage.prompt_tokens
    text_chunks = chunks[:-1]
    assert all(c.id == chunks[0].id for c in chunks)
    assert "".join(c.choices[0].text for c in text_chunks) == full.choices[0].text
    assert [c.choices[0].finish_reason for c in text_chunks][-1] == "length"
    assert all(c.choices[0].finish_reason is None for c in text_chunks[:-1])


def test_stream_without_usage_has_no_usage_chunk(client):
    chunks = list(client.completions.create(model="tiny", prompt="x", max_tokens=3, temperature=0, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_n_and_batch_choice_indices(client):
    resp = client.completions.create(model="tiny", prompt=["one", "two"], n=3, max_tokens=4, temperature=1.0,
                                     seed=7)
    assert [c.index for c in resp.choices] == list(range(6))
    assert resp.usage.completion_tokens == sum(4 for _ in resp.choices)
    # Each prompt's choices come from that prompt: greedy single requests differ per prompt.
    stream = list(client.completions.create(model="tiny", prompt=["one", "two"], n=2, max_tokens=3,
                                            temperature=1.0, seed=7, stream=True))
    assert {c.choices[0].index for c in stream} == {0, 1, 2, 3}


def test_token_id_prompts(client, tiny_server):
    ids = post_json(tiny_server.url + "/tokenize", {"prompt": "Hello world"})[1]["tokens"]
    by_text = client.completions.create(model="tiny", prompt="Hello world", max_tokens=5, temperature=0)
    by_ids = client.completions.create(model="tiny", prompt=ids, max_tokens=5, temperature=0)
    by_lists = client.completions.create(model="tiny", prompt=[ids, ids], max_tokens=5, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert [c.text for c in by_lists.choices] == [by_text.choices[0].text] * 2
    assert by_ids.usage.prompt_tokens == len(ids)


def test_completion_logprobs(client):
    resp = client.completions.create(model="tiny", prompt="Hello", max_tokens=6, temperature=0, logprobs=3)
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 6
    assert "".join(lp.tokens) == resp.choices[0].text or len(resp.choices[0].text) <= len("".join(lp.tokens))
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert logprob <= 0.0
        assert 1 <= len(top) <= 4  # the sampled token plus the top 3 (merged when it is one of them)
        assert top[token] == logprob
        assert max(top.values()) == pytest.approx(logprob, abs=1e-5)  # greedy picks the best
    offsets = lp.text_offset
    assert offsets[0] == 0
    assert all(b - a == len(t) for a, b, t in zip(offsets, offsets[1:], lp.tokens))


def test_echo_with_logprobs(client):
    resp = client.completions.create(model="tiny", prompt="Hello", max_tokens=2, temperature=0, logprobs=1,
                                     echo=True)
    choice = resp.choices[0]
    assert choice.text.startswith("Hello")
    lp = choice.logprobs
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert len(lp.tokens) == resp.usage.prompt_tokens + 2
    only_prompt = client.completions.create(model="tiny", prompt="Hello", max_tokens=0, echo=True)
    assert only_prompt.choices[0].text == "Hello"


def test_stop_string_truncates(client):
    full = client.completions.create(model="tiny", prompt="stop test", max_tokens=16, temperature=0).choices[0].text
    assert len(full) >= 4
    stop = full[2:4]
    resp = client.completions.create(model="tiny", prompt="stop test", max_tokens=16, temperature=0, stop=[stop])
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.model_extra["stop_reason"] == stop
    assert choice.text == full[:full.index(stop)]
    kept = client.completions.create(model="tiny", prompt="stop test", max_tokens=16, temperature=0, stop=stop,
                                     extra_body={"include_stop_str_in_output": True})
    assert kept.choices[0].text == full[:full.index(stop) + len(stop)]


def test_seed_reproducibility(client):
    kwargs = dict(model="tiny", prompt="seeded", max_tokens=12, temperature=1.0)
    a = client.completions.create(seed=1234, **kwargs).choices[0].text
    b = client.completions.create(seed=1234, **kwargs).choices[0].text
    others = {client.completions.create(seed=s, **kwargs).choices[0].text for s in (1, 2, 3)}
    assert a == b
    assert len(others | {a}) > 1


def test_chat_completion(client, tiny_server):
    messages = [{"role": "user", "content": "Hi there"}]
    resp = client.chat.completions.create(model="tiny", messages=messages, max_completion_tokens=6, temperature=0)
    assert resp.object == "chat.completion"
    assert resp.id.startswith("chatcmpl-")
    msg = resp.choices[0].message
    assert msg.role == "assistant"
    assert resp.choices[0].finish_reason == "length"
    # The prompt is the chat template's rendering (the same tokens /tokenize gives for it).
    rendered = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    ids = post_json(tiny_server.url + "/tokenize", {"prompt": rendered, "add_special_tokens": False})[1]
    assert resp.usage.prompt_tokens == ids["count"]
    comp = client.completions.create(model="tiny", prompt=ids["tokens"], max_tokens=6, temperature=0)
    assert msg.content == comp.choices[0].text


def test_chat_stream(client):
    kwargs = dict(model="tiny", messages=[{"role": "user", "content": "Stream please"}], max_tokens=8,
                  temperature=0)
    full = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    assert chunks[0].object == "chat.completion.chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    body = chunks[1:-1]
    assert "".join(c.choices[0].delta.content or "" for c in body) == full.choices[0].message.content
    assert body[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_chat_n_stream_role_chunk_per_choice(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                                 n=2, max_tokens=3, temperature=0.8, seed=3, stream=True))
    roles = [c.choices[0].index for c in chunks if c.choices and c.choices[0].delta.role == "assistant"]
    assert roles == [0, 1]
    finishes = sorted(c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finishes == [0, 1]


def test_chat_logprobs(client):
    resp = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                          max_tokens=4, temperature=0, logprobs=True, top_logprobs=2)
    content = resp.choices[0].logprobs.content
    assert len(content) == 4
    for item in content:
        assert len(item.top_logprobs) == 2
        assert item.top_logprobs[0].token == item.token  # the sampled token comes first
        assert item.bytes == list(item.token.encode())


def test_bad_request_errors(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x", temperature=-1)
    assert e.value.status_code == 400
    assert "temperature" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x" * 10, max_tokens=250)
    assert "maximum context length is 256 tokens" in e.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], top_logprobs=2)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                       response_format={"type": "json_object"})
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"chat_template": "{{ messages }}"})
    assert "untrusted" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x", n=2, stream=True,
                                  extra_body={"use_beam_search": True})
    assert "beam search" in e.value.message
    with pytest.raises(openai.BadRequestError):  # beam width is n: at least 1
        client.completions.create(model="tiny", prompt="x", n=0, extra_body={"use_beam_search": True})


def offline_beams(prompt, width, max_tokens, length_penalty):
    out = subprocess.run([cvllm_binary(), "generate", "--model", str(TINY_MODEL), "--prompt", prompt,
                          "--beam-width", str(width), "--length-penalty", str(length_penalty),
                          "--max-tokens", str(max_tokens), "--output-json"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]["outputs"]


@pytest.mark.parametrize("width,length_penalty", [(1, 1.0), (3, 1.0), (4, 0.5)])
def test_beam_search_matches_offline_engine(client, width, length_penalty):
    ref = offline_beams("Hello world", width, 6, length_penalty)
    extra = {"use_beam_search": True, "length_penalty": length_penalty, "return_token_ids": True}
    resp = client.completions.create(model="tiny", prompt="Hello world", n=width, max_tokens=6,
                                     temperature=0, extra_body=extra)
    assert len(resp.choices) == width == len(ref)
    for choice, beam in zip(resp.choices, ref):
        assert choice.text == beam["text"]
        assert choice.model_extra["token_ids"] == beam["token_ids"]
        assert choice.finish_reason == beam["finish_reason"]
    assert resp.usage.completion_tokens == sum(len(b["token_ids"]) for b in ref)

    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                          n=width, max_tokens=4, temperature=0,
                                          extra_body={"use_beam_search": True})
    assert [c.index for c in chat.choices] == list(range(width))
    assert all(c.message.role == "assistant" for c in chat.choices)


def test_not_found_error(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="no-such-model", prompt="x")
    assert e.value.body["param"] == "model"
    assert e.value.body["type"] == "NotFoundError"


def test_api_key():
    server = Server([TINY_MODEL, "--api-key", "secret-key", "--disable-log-stats"])
    try:
        bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        with pytest.raises(openai.AuthenticationError):
            bad.completions.create(model=str(TINY_MODEL), prompt="x", max_tokens=1)
        good = openai.OpenAI(base_url=server.url + "/v1", api_key="secret-key", max_retries=0)
        assert good.completions.create(model=str(TINY_MODEL), prompt="x", max_tokens=1).choices
        # Outside /v1 no key is needed, as in vLLM.
        assert post_json(server.url + "/tokenize", {"prompt": "x"})[0] == 200
    finally:
        assert server.stop() == 0
