"""The server as a service: many concurrent SSE clients, clients that disconnect (their requests
are aborted), graceful shutdown on SIGTERM with requests in flight, /metrics with vLLM's names,
/health, /version, X-Request-Id and CORS."""
import http.client
import json
import re
import signal
import socket
import threading
import time
import urllib.request

import pytest

from conftest import TINY_MODEL, Server, default_model_path, post_json


def metrics(url):
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return text, values


def stream_completion(port, body, results, index):
    """One SSE client on its own connection; records (number of text chunks, finished with [DONE])."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read().decode()
        events = [b[len("data: "):] for b in data.split("\n\n") if b]
        tokens = sum(1 for e in events[:-1] if json.loads(e)["choices"])
        results[index] = (resp.status, tokens, events[-1] == "[DONE]")
        conn.close()
    except Exception as e:  # noqa: BLE001 -- reported by the assertion below
        results[index] = ("error", repr(e), False)


@pytest.fixture(scope="module")
def server():
    s = Server([TINY_MODEL, "--served-model-name", "tiny", "--max-num-seqs", "256",
                "--enable-request-id-headers", "--disable-log-stats"])
    yield s
    assert s.stop() == 0


def test_300_concurrent_streaming_clients(server):
    n = 300
    results = [None] * n
    threads = [threading.Thread(target=stream_completion, args=(
        server.port, {"prompt": f"client {i}", "max_tokens": 12, "ignore_eos": True, "temperature": 0.7,
                      "seed": i, "stream": True}, results, i)) for i in range(n)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.time() - start
    bad = [r for r in results if r != (200, 12, True)]
    assert not bad, f"{len(bad)} of {n} streams failed, e.g. {bad[:3]}"
    print(f"{n} concurrent SSE clients finished in {elapsed:.2f} s")


def test_metrics_names_and_counts(server):
    before_text, before = metrics(server.url)
    status, body = post_json(server.url + "/v1/completions", {"prompt": "count me", "max_tokens": 4,
                                                              "ignore_eos": True, "temperature": 0})
    assert status == 200
    text, after = metrics(server.url)
    labels = '{engine="0",model_name="tiny"}'
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:prompt_tokens_total",
                 "vllm:generation_tokens_total", "vllm:num_preemptions_total",
                 "vllm:time_to_first_token_seconds_count", "vllm:inter_token_latency_seconds_count",
                 "vllm:e2e_request_latency_seconds_count", "vllm:e2e_request_latency_seconds_sum"):
        assert name + labels in after, name
    for hist in ("vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
                 "vllm:e2e_request_latency_seconds"):
        assert f"# TYPE {hist} histogram" in text
        assert hist + '_bucket{engine="0",model_name="tiny",le="+Inf"}' in after
    key = lambda n: n + labels  # noqa: E731
    assert after[key("vllm:prompt_tokens_total")] - before[key("vllm:prompt_tokens_total")] == \
        body["usage"]["prompt_tokens"]
    assert after[key("vllm:generation_tokens_total")] - before[key("vllm:generation_tokens_total")] == 4
    assert after[key("vllm:e2e_request_latency_seconds_count")] - \
        before[key("vllm:e2e_request_latency_seconds_count")] == 1
    assert after[key("vllm:inter_token_latency_seconds_count")] - \
        before[key("vllm:inter_token_latency_seconds_count")] == 3  # 4 tokens, 3 gaps
    success = 'vllm:request_success_total{engine="0",model_name="tiny",finished_reason="length"}'
    assert after[success] - before[success] == 1
    assert after[key("vllm:num_requests_running")] == 0


def test_health_version_request_id_cors(server):
    with urllib.request.urlopen(server.url + "/health", timeout=10) as r:
        assert r.status == 200 and r.read() == b""
    with urllib.request.urlopen(server.url + "/version", timeout=10) as r:
        assert re.fullmatch(r"\d+\.\d+\.\d+", json.loads(r.read())["version"])
    req = urllib.request.Request(server.url + "/v1/completions", method="POST",
                                 data=json.dumps({"prompt": "x", "max_tokens": 1}).encode(),
                                 headers={"Content-Type": "application/json", "X-Request-Id": "my-req-42",
                                          "Origin": "http://example.com"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["X-Request-Id"] == "my-req-42"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert json.loads(r.read())["id"] == "cmpl-my-req-42"
    pre = urllib.request.Request(server.url + "/v1/chat/completions", method="OPTIONS",
                                 headers={"Origin": "http://example.com", "Access-Control-Request-Method": "POST",
                                          "Access-Control-Request-Headers": "authorization,content-type"})
    with urllib.request.urlopen(pre, timeout=10) as r:
        assert r.status == 200
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        assert r.headers["Access-Control-Allow-Headers"] == "authorization,content-type"


def test_reused_request_ids_do_not_collide(server):
    body = {"prompt": "same id", "max_tokens": 8, "ignore_eos": True, "request_id": "dup"}
    results = [None] * 8
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(
        i, post_json(server.url + "/v1/completions", body))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(status == 200 and resp["id"] == "cmpl-dup" for status, resp in results)


@pytest.fixture(scope="module")
def slow_server():
    """The default model: slow enough on CPU that a long request is still running seconds later."""
    if not default_model_path().exists():
        pytest.skip("default model not downloaded (scripts/setup.sh fetches it)")
    s = Server([default_model_path(), "--served-model-name", "smollm2", "--max-model-len", "2048",
                "--kv-cache-memory-bytes", str(256 << 20), "--disable-log-stats"])
    yield s
    assert s.stop() == 0


def running_and_aborted(url):
    _, values = metrics(url)
    running = values['vllm:num_requests_running{engine="0",model_name="smollm2"}']
    aborted = values['vllm:request_success_total{engine="0",model_name="smollm2",finished_reason="abort"}']
    return running, aborted


def wait_until(predicate, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_streaming_client_disconnect_aborts(slow_server):
    _, aborted_before = running_and_aborted(slow_server.url)
    body = json.dumps({"prompt": "Tell me a long story.", "max_tokens": 1500, "ignore_eos": True,
                       "stream": True})
    sock = socket.create_connection(("127.0.0.1", slow_server.port), timeout=30)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body.encode())
    received = b""
    while received.count(b"data: ") < 3:
        received += sock.recv(4096)
    assert running_and_aborted(slow_server.url)[0] == 1
    sock.close()
    assert wait_until(lambda: running_and_aborted(slow_server.url) == (0, aborted_before + 1)), \
        running_and_aborted(slow_server.url)


def test_non_streaming_client_disconnect_aborts(slow_server):
    _, aborted_before = running_and_aborted(slow_server.url)
    body = json.dumps({"prompt": "Tell me a long story.", "max_tokens": 1500, "ignore_eos": True})
    sock = socket.create_connection(("127.0.0.1", slow_server.port), timeout=30)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body.encode())
    assert wait_until(lambda: running_and_aborted(slow_server.url)[0] == 1)
    sock.close()
    assert wait_until(lambda: running_and_aborted(slow_server.url) == (0, aborted_before + 1)), \
        running_and_aborted(slow_server.url)


def test_sigterm_with_requests_in_flight_exits_cleanly():
    if not default_model_path().exists():
        pytest.skip("default model not downloaded (scripts/setup.sh fetches it)")
    s = Server([default_model_path(), "--max-model-len", "2048", "--kv-cache-memory-bytes", str(256 << 20),
                "--disable-log-stats"])
    results = {}

    def stream():
        req = urllib.request.Request(s.url + "/v1/completions", method="POST", headers={
            "Content-Type": "application/json"}, data=json.dumps({
                "prompt": "Once upon a time", "max_tokens": 1500, "ignore_eos": True, "stream": True}).encode())
        with urllib.request.urlopen(req, timeout=60) as r:
            results["events"] = [b for b in r.read().decode().split("\n\n") if b]

    def plain():
        results["plain"] = post_json(s.url + "/v1/completions", {"prompt": "Hello", "max_tokens": 1500,
                                                                 "ignore_eos": True})

    threads = [threading.Thread(target=stream), threading.Thread(target=plain)]
    for t in threads:
        t.start()
    assert wait_until(lambda: metrics(s.url)[1].get(
        'vllm:num_requests_running{engine="0",model_name="%s"}' % default_model_path(), 0) == 2)
    start = time.time()
    s.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=30)
    assert s.proc.wait(timeout=30) == 0
    assert time.time() - start < 10
    events = results["events"]
    assert events[-1] == "data: [DONE]"
    assert "error" in json.loads(events[-2][len("data: "):])  # the stream says why it ended
    status, body = results["plain"]
    assert status == 503 and body["error"]["code"] == 503
    s.stop()
