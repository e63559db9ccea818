"""The command line without services: help, version, status of a stack that is not there."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hopscope.cli import __version__, app

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "stack" in result.stdout and "demo" in result.stdout


def test_help_keeps_square_brackets() -> None:
    # Typer renders help as rich markup; an unescaped "[process]" would read as a tag and vanish.
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "e.g. [process]" in " ".join(result.stdout.split())


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


def test_status_of_no_stack_is_down_with_exit_3(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stack", "status", "--json", "--state-dir", str(tmp_path)])
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["kafka"]["up"] is False and report["elasticsearch"]["up"] is False


def test_env_without_stack_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stack", "env", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "StackNotRunningError" in result.output and "hopscope stack up" in result.output


def test_bad_key_value_option_is_a_parameter_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["stack", "up", "--state-dir", str(tmp_path), "--kafka-config", "novalue"]
    )
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


def test_demo_without_endpoints_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOPSCOPE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("HOPSCOPE_ES_URL", raising=False)
    monkeypatch.setenv("HOPSCOPE_STATE_DIR", str(tmp_path))
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 1
    assert "SettingsError" in result.output and "hopscope stack up" in result.output


def test_config_file_supplies_option_defaults(tmp_path: Path) -> None:
    config = tmp_path / "hopscope.toml"
    config.write_text('[simulate]\nscenario = "no-such-scenario"\n')
    result = runner.invoke(app, ["--config", str(config), "simulate", "--bootstrap", "k:9"])
    assert result.exit_code == 2 and "no-such-scenario" in result.output
    # A flag still wins over the file.
    flagged = runner.invoke(app, ["--config", str(config), "simulate", "--bootstrap", "k:9",
                                  "--scenario", "meltdown"])  # fmt: skip
    assert flagged.exit_code == 2 and "meltdown" in flagged.output


def test_broken_config_file_is_a_parameter_error(tmp_path: Path) -> None:
    config = tmp_path / "hopscope.toml"
    config.write_text("process = 3\n")
    result = runner.invoke(app, ["--config", str(config), "stack", "status"])
    assert result.exit_code == 2 and "one table per command" in result.output


def test_analyze_offers_exactly_the_analysis_jobs() -> None:
    # The CLI's choices are stated for typer's help; they must follow the static job table.
    from hopscope.analysis.jobs import JOB_NAMES
    from hopscope.cli.analyze import AnalyzeJob

    assert [j.value for j in AnalyzeJob] == ["report", *JOB_NAMES, "compare"]


def test_analyze_sets_the_allocator_options_before_polars_loads(tmp_path: Path) -> None:
    # polars' jemalloc reads _RJEM_MALLOC_CONF once, when polars loads: the command must
    # import hopscope.analysis first, in a fresh interpreter as a user runs it.
    from hopscope.analysis import ALLOCATOR_CONF, ALLOCATOR_ENV

    code = (
        "import os, sys\n"
        "from typer.testing import CliRunner\n"
        "from hopscope.cli import app\n"
        "assert 'polars' not in sys.modules\n"
        f"CliRunner().invoke(app, ['analyze', 'report', '--parquet', {str(tmp_path)!r}])\n"
        "assert 'polars' in sys.modules\n"
        f"print(os.environ[{ALLOCATOR_ENV!r}])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != ALLOCATOR_ENV}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    # polars puts its own defaults first; the later options win.
    assert done.stdout.strip().endswith(ALLOCATOR_CONF)


@pytest.fixture(scope="module")
def otlp_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lock-contention simulation as an OTLP/JSON export (a collector's file exporter)."""
    from google.protobuf.json_format import MessageToJson
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hopscope.ingest.simulator import Scenario, SimulationConfig, parse_iso8601_ns, simulate

    spans = InMemorySpanExporter()
    config = SimulationConfig(
        start_ns=parse_iso8601_ns("2026-03-02T10:00:00Z"),
        scenario=Scenario("lock-contention"),
        seed=7,
        traces=300,
    )
    simulate(config, span_processors=[SimpleSpanProcessor(spans)], log_processors=[])
    path = tmp_path_factory.mktemp("export") / "export.json"
    path.write_text(MessageToJson(encode_spans(spans.get_finished_spans())))
    return path


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    # The installed command in a pipe, as a person's `| less` or a CI log sees it: rich takes
    # the width from COLUMNS.
    command = [str(Path(sys.executable).with_name("hopscope")), "analyze", *args]
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_analyze_hops_fits_80_columns(otlp_export: Path) -> None:
    result = _analyze("hops", "--file", str(otlp_export))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "hops: edges" in result.stdout and "…" not in result.stdout
    assert max(len(line) for line in lines) <= 80
    assert "p99 (ms)" in result.stdout and "_ns" not in result.stdout
    assert "more columns with --wide" in result.stdout


def test_analyze_hops_wide_shows_every_column(otlp_export: Path) -> None:
    result = _analyze("hops", "--file", str(otlp_export), "--wide")
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout and "more column" not in result.stdout
    assert "client p999 (ms)" in result.stdout and "clock skew share" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) > 80


def test_client_library_lines_show_only_at_debug_level(capsys: pytest.CaptureFixture[str]) -> None:
    """The Kafka and Elasticsearch clients log refused connections and missing topics as
    warnings and errors; hopscope says what matters in its own words, so theirs are shown
    only with --log-level debug."""
    import logging

    from hopscope.cli.app import _configure_logging

    try:
        _configure_logging("warning")
        logging.getLogger("kafka.cluster").error("Topic otlp_logs not found")
        logging.getLogger("elastic_transport.node_pool").warning("Node has failed")
        logging.getLogger("hopscope.processors.checkpoint").warning("ours")
        quiet = capsys.readouterr().err
        assert "not found" not in quiet and "Node has failed" not in quiet and "ours" in quiet

        _configure_logging("debug")
        logging.getLogger("kafka.cluster").error("Topic otlp_logs not found")
        assert "Topic otlp_logs not found" in capsys.readouterr().err
    finally:
        _configure_logging("warning")


def test_analyze_compare_splits_one_file_by_time(otlp_export: Path) -> None:
    # The simulation runs from 10:00:00 for about 3 s: the last second against the one before.
    window = ["--since", "2026-03-02T10:00:02Z", "--until", "2026-03-02T10:00:03Z"]
    result = _analyze("compare", "--file", str(otlp_export), "--json", *window)
    assert result.returncode == 0, result.stderr
    tables = json.loads(result.stdout)["tables"]
    assert set(tables) == {"suspects", "services", "operations", "edges"}
    assert tables["operations"] and tables["edges"]

    baseline = ["--baseline-since", "2026-03-02T10:00:00Z"]
    baseline += ["--baseline-until", "2026-03-02T10:00:01Z"]
    report = _analyze("report", "--file", str(otlp_export), "--json", *window[:2], *baseline)
    assert report.returncode == 0, report.stderr
    body = json.loads(report.stdout)
    assert "compare" in body["tables"]
    assert body["baseline_window"][0].startswith("2026-03-02T10:00:00")

    wrong = _analyze("hops", "--file", str(otlp_export), "--baseline", "same-hour-yesterday")
    assert wrong.returncode != 0
