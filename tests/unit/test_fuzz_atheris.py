"""A short coverage-guided fuzzing run of the decoder (tests/fuzz/fuzz_decode.py), when atheris
is installed (Linux wheels; it is skipped elsewhere)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.otlp_builders import INVALID_MARKER, otlp_logs, otlp_spans

HARNESS = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_decode.py"
START = 1_775_030_400_000_000_000


def test_a_short_atheris_run_finds_no_crash(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    trace, root, child = bytes(range(1, 17)), bytes(range(1, 9)), bytes(range(9, 17))
    seeds = {
        "spans": otlp_spans(
            trace,
            [
                {
                    "span_id": root,
                    "start": START,
                    "end": START + 9,
                    "attributes": {"k": "v", "n": 1, "map": {"a": [1, "x"]}, "": INVALID_MARKER},
                    "events": [("exception", START, {"message": "boom"})],
                    "links": [(trace, child)],
                },
                {"span_id": child, "parent": root, "start": START + 5, "end": 0},
            ],
        ),
        "logs": otlp_logs([{"time": 0, "trace_id": trace, "body": {"k": ["v"]}}]),
        "json": json.dumps(
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {"spans": [{"traceId": trace.hex(), "spanId": root.hex(), "name": "j"}]}
                        ]
                    }
                ]
            }
        ).encode(),
    }
    for name, payload in seeds.items():
        (corpus / name).write_bytes(payload)
    run = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            "-runs=50000",
            "-max_total_time=120",
            "-max_len=4096",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    crashes = list(tmp_path.glob("crash-*"))
    assert run.returncode == 0 and not crashes, run.stderr[-4000:]
    assert "Done 50000 runs" in run.stderr, run.stderr[-2000:]
    done = [line for line in run.stderr.splitlines() if "DONE" in line]
    print(done[-1] if done else "")  # the coverage reached, for the log
