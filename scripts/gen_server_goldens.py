#!/usr/bin/env python3
"""Writes tests/e2e/server/golden/*.json: the server's masked responses to the cases in
tests/e2e/server/golden_cases.py, from the tiny test model, after checking them against references:
- every object has exactly vLLM's fields in vLLM's order (golden_cases.VLLM_KEYS, from vLLM's
  pydantic models);
- greedy completions equal what the offline engine (`cvllm generate`) produces for the same prompt;
- each streamed case's deltas concatenate to the non-streamed text of the same request.

    python3 scripts/gen_server_goldens.py [--bin build/cvllm]

Deterministic: greedy or seeded sampling on a fixed model; ids and timestamps are masked.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/e2e/server"))

from conftest import CHATML, TINY_MODEL, Server  # noqa: E402
from golden_cases import CASES, fetch, run_case  # noqa: E402


def offline_text(binary, prompt, max_tokens, stop=None):
    cmd = [binary, "generate", "--model", str(TINY_MODEL), "--prompt", prompt, "--temperature", "0",
           "--max-tokens", str(max_tokens), "--output-json"]
    for s in stop or []:
        cmd += ["--stop", s]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]["outputs"][0]["text"]


def cross_check(binary, url, case, golden):
    name, _, path, body = case
    if name in ("completion_greedy", "completion_stop"):
        want = offline_text(binary, body["prompt"], body["max_tokens"], body.get("stop"))
        got = golden["response"]["choices"][0]["text"]
        assert got == want, f"{name}: server {got!r} != offline engine {want!r}"
    if body and body.get("stream"):
        plain = dict(body, stream=False)
        plain.pop("stream_options", None)
        _, full = fetch(url, "POST", path, plain)
        events = golden["response"][:-1]
        if path == "/v1/completions":
            text = "".join(c["text"] for e in events for c in e["choices"])
            assert text == full["choices"][0]["text"], f"{name}: stream {text!r} != {full['choices'][0]['text']!r}"
        else:
            text = "".join(c["delta"].get("content", "") for e in events for c in e["choices"])
            assert text == full["choices"][0]["message"]["content"], f"{name}: {text!r}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "build/cvllm"))
    args = ap.parse_args()
    os.environ["CVLLM_BIN"] = args.bin
    out_dir = ROOT / "tests/e2e/server/golden"
    out_dir.mkdir(exist_ok=True)
    server = Server([TINY_MODEL, "--chat-template", CHATML, "--served-model-name", "tiny",
                     "--served-model-name", "tiny-alias", "--max-model-len", "256", "--disable-log-stats"])
    try:
        for case in CASES:
            golden = run_case(server.url, case)
            cross_check(args.bin, server.url, case, golden)
            if case[0] == "models":
                for card in golden["response"]["data"]:
                    card["root"] = "<model path>"
            path = out_dir / f"{case[0]}.json"
            path.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
            print(f"wrote {path.relative_to(ROOT)} ({golden['status']})")
    finally:
        assert server.stop() == 0


if __name__ == "__main__":
    main()
