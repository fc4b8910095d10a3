"""Replays the golden request -> response cases (golden/*.json, written by
scripts/gen_server_goldens.py) against a fresh server and compares the masked responses exactly,
SSE chunk sequences included; every response must also have vLLM's fields in vLLM's order."""
import json
from pathlib import Path

import pytest

from golden_cases import CASES, run_case

GOLDEN_DIR = Path(__file__).parent / "golden"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_golden(tiny_server, case):
    expected = json.loads((GOLDEN_DIR / f"{case[0]}.json").read_text())
    got = run_case(tiny_server.url, case)
    if case[0] == "models":  # the model path depends on where the checkout is
        for card in got["response"]["data"]:
            card["root"] = "<model path>"
    assert got["request"] == expected["request"]
    assert got["status"] == expected["status"]
    assert json.dumps(got["response"], indent=1, ensure_ascii=False) == \
        json.dumps(expected["response"], indent=1, ensure_ascii=False)
