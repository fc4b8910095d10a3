"""Checks on the default model (SmolLM2-135M-Instruct, real weights, real chat template): server
output equals the offline engine's, and chat requests get the model's own template."""
import json
import subprocess

import openai
import pytest

from conftest import cvllm_binary, default_model_path, post_json


@pytest.fixture(scope="module")
def client(default_server):
    return openai.OpenAI(base_url=default_server.url + "/v1", api_key="x", max_retries=0, timeout=120)


def test_completion_equals_offline_engine(client):
    prompt = "The capital of France is"
    out = subprocess.run([cvllm_binary(), "generate", "--model", str(default_model_path()), "--prompt", prompt,
                          "--temperature", "0", "--max-tokens", "12", "--output-json"],
                         check=True, capture_output=True, text=True)
    ref = json.loads(out.stdout)[0]["outputs"][0]
    resp = client.completions.create(model="smollm2", prompt=prompt, max_tokens=12, temperature=0)
    assert resp.choices[0].text == ref["text"]
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="smollm2", prompt=prompt, max_tokens=12, temperature=0, stream=True))
    assert streamed == ref["text"]


def test_chat_uses_the_model_template(client, default_server):
    messages = [{"role": "user", "content": "What is 2+2?"}]
    status, rendered = post_json(default_server.url + "/v1/chat/completions/render",
                                 {"model": "smollm2", "messages": messages})
    assert status == 200
    # SmolLM2's template adds its default system prompt and ChatML turns.
    assert rendered["prompt"] == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                                  "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                                  "<|im_start|>assistant\n")
    status, tok = post_json(default_server.url + "/tokenize", {"prompt": rendered["prompt"],
                                                               "add_special_tokens": False})
    assert tok["tokens"] == rendered["token_ids"]
    status, tok_chat = post_json(default_server.url + "/tokenize", {"messages": messages})
    assert tok_chat["tokens"] == rendered["token_ids"]

    chat = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=24, temperature=0)
    comp = client.completions.create(model="smollm2", prompt=rendered["token_ids"], max_tokens=24, temperature=0)
    assert chat.choices[0].message.content == comp.choices[0].text
    assert chat.usage.prompt_tokens == len(rendered["token_ids"])
    # The model ends its turn with <|im_end|>: a short answer stops rather than running out.
    short = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=200, temperature=0)
    assert short.choices[0].finish_reason == "stop"
    assert "<|im_end|>" not in short.choices[0].message.content
