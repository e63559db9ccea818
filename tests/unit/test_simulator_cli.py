"""``hopscope simulate``: option errors, caught before anything connects.

The runs themselves go to the real broker: tests/integration/test_simulate_kafka.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hopscope.cli import app

runner = CliRunner()
START = "2025-03-01T12:00:00Z"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "meltdown"], "meltdown"),
        (["--lb-strategy", "random"], "random"),
        (["--scenario", "lb-skew", "--lb-strategy", "round_robin"], "ip_hash"),
        (["--traces", "5", "--duration", "1"], "not both"),
        (["--traces", "0"], "traces must be >= 1"),
        (["--start", "yesterday"], "ISO 8601"),
        (["--run-id", "a b"], "run_id must be"),
    ],
)
def test_bad_options_are_parameter_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["simulate", "--bootstrap", "kafka:9092", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_without_endpoints_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOPSCOPE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("HOPSCOPE_ES_URL", raising=False)
    monkeypatch.setenv("HOPSCOPE_STATE_DIR", str(tmp_path))
    result = runner.invoke(app, ["simulate", "--traces", "3"])
    assert result.exit_code == 1
    assert "SettingsError" in result.output and "hopscope stack up" in result.output
