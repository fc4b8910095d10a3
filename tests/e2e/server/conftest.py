"""Shared fixtures for the server tests: start `cvllm serve` on a free loopback port, wait until
it is ready, hand out its base URL, and stop it with SIGTERM at the end (checking it exits 0).

The binary comes from $CVLLM_BIN (CTest sets it), else ../../../build/cvllm. Tests use the tiny
random-weight model from tests/golden/data (fast), and the default SmolLM2 model for the few
checks that need real text and a real chat template (skipped when it is not downloaded).
"""
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

SOURCE_DIR = Path(os.environ.get("CVLLM_SOURCE_DIR", Path(__file__).resolve().parents[3]))
TINY_MODEL = SOURCE_DIR / "tests/golden/data/tiny_llama_q8_0.gguf"
CHATML = SOURCE_DIR / "tests/e2e/server/data/template_chatml.jinja"


def cvllm_binary() -> str:
    env = os.environ.get("CVLLM_BIN")
    if env:
        return env
    return str(SOURCE_DIR / "build" / "cvllm")


def default_model_path() -> Path:
    cache = os.environ.get("CVLLM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cvllm")
    return Path(cache) / "SmolLM2-135M-Instruct.Q4_1.gguf"


class Server:
    """A running `cvllm serve` process."""

    def __init__(self, args, env=None, ready_timeout=120.0):
        self.log = tempfile.NamedTemporaryFile(prefix="cvllm_serve_", suffix=".log", delete=False)
        cmd = [cvllm_binary(), "serve", *[str(a) for a in args], "--host", "127.0.0.1", "--port", "0",
               "--disable-uvicorn-access-log"]
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        self.port = self._wait_for_port(ready_timeout)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_healthy(ready_timeout)

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def _wait_for_port(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(r"API server on http://[^:]+:(\d+)", self.log_text())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"cvllm serve exited with {self.proc.returncode}:\n{self.log_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"cvllm serve did not start:\n{self.log_text()}")

    def _wait_healthy(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server never became healthy")

    def stop(self, timeout=30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        os.unlink(self.log.name)
        return code


def post_json(url, body, headers=None, timeout=60):
    """POSTs raw JSON (bytes or object); returns (status, parsed body or text)."""
    data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def sse_events(url, body, timeout=60):
    """POSTs a streaming request; returns the list of `data:` payloads (the last is '[DONE]')."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        text = r.read().decode()
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: "), block
        events.append(block[len("data: "):])
    return events


@pytest.fixture(scope="module")
def tiny_server():
    server = Server([TINY_MODEL, "--chat-template", CHATML, "--served-model-name", "tiny",
                     "--served-model-name", "tiny-alias", "--max-model-len", "256",
                     "--disable-log-stats"])
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def default_server():
    if not default_model_path().exists():
        pytest.skip("default model not downloaded (scripts/setup.sh fetches it)")
    server = Server([default_model_path(), "--served-model-name", "smollm2", "--max-model-len", "2048",
                     "--kv-cache-memory-bytes", str(256 << 20), "--disable-log-stats"])
    yield server
    assert server.stop() == 0
