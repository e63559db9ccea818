"""The alerting rules: generated files committed, valid for promtool, and every alert unit-tested.

``promtool test rules`` (Debian's ``prometheus`` package) runs hand-written series through the
production rules (scale 1): for each alert a case where it fires, one where it does not, and
one where it resolves. Expected annotations are the rule's own with ``$labels``/``$value``
filled in, so the tests pin what fires and when rather than restating wording.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hopscope.dashboards import alerts, grafana
from hopscope.processors.slo import DEFAULT_SLOS, SLO, slos_from_document

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
PROC = 'instance="p:9464", job="hopscope-processors"'


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: `apt-get install -y prometheus` (Debian ships it)")
    return found


def test_committed_rules_equal_what_alerts_generate_writes() -> None:
    for relative, content in alerts.deploy_files().items():
        assert (DEPLOY / relative).read_text() == content, (
            f"deploy/{relative} is stale: run `hopscope alerts generate`"
        )


def test_grafana_slo_panels_read_recorded_series() -> None:
    recorded = {
        rule.record
        for groups in alerts.all_rules().values()
        for _name, rules in groups
        for rule in rules
    }
    assert f"{grafana.SLO_RATIO}30d" in recorded and f"{grafana.SLO_RATIO}1h" in recorded
    assert grafana.SLO_OBJECTIVE in recorded


def test_promtool_checks_the_committed_rules() -> None:
    files = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
    proc = subprocess.run([_promtool(), "check", "rules", *map(str, files)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_slo_tables_override_defaults() -> None:
    slos = slos_from_document({"slo": {
        "risk-check": {"threshold_ms": 40, "latency_objective": 99.9},
        "issuer": {"enabled": False},
        "capture": {"source": "payment", "target": "clearing", "threshold_ms": 900,
                    "latency_objective": 99, "error_objective": 99.5},
    }})  # fmt: skip
    names = [slo.name for slo in slos]
    assert names == ["authorize", "risk-check", "clearing", "ledger-db", "capture"]
    assert slos[1] == SLO("risk-check", "payment", "risk", 0.04, 0.999, 0.999,
                          description=DEFAULT_SLOS[1].description)  # fmt: skip
    with pytest.raises(ValueError, match=r"\[slo.x\]: missing threshold_ms"):
        slos_from_document({"slo": {"x": {"source": "a", "target": "b"}}})
    with pytest.raises(ValueError, match="unknown keys"):
        slos_from_document({"slo": {"authorize": {"treshold_ms": 1}}})
    with pytest.raises(ValueError, match="latency_objective"):
        slos_from_document({"slo": {"authorize": {"latency_objective": 100}}})


# -- promtool test rules -------------------------------------------------------------------

_SLO_LABELS = {"severity": "page", "team": "payments"}


def _annotations(alert: str, labels: dict[str, str], value: str = "") -> dict[str, str]:
    """The rule's annotations of ``alert`` (for the SLO alerts: the one of ``labels['slo']``)
    with ``{{ $labels.x }}`` and ``{{ $value }}`` filled in."""
    for groups in alerts.all_rules().values():
        for _name, rules in groups:
            for rule in rules:
                if rule.alert == alert and rule.labels.get("slo") == labels.get("slo"):
                    filled = {}
                    for key, text in rule.annotations.items():
                        for name, label in labels.items():
                            text = text.replace(f"{{{{ $labels.{name} }}}}", label)
                        filled[key] = text.replace("{{ $value }}", value)
                    return filled
    raise AssertionError(f"no alert {alert} for {labels}")


def _case(alert: str, at: str, firing: list[tuple[dict[str, str], str]]) -> dict[str, Any]:
    """An alert_rule_test: ``alert`` at ``at`` fires exactly with these (labels, value)."""
    return {"eval_time": at, "alertname": alert, "exp_alerts": [
        {"exp_labels": labels, "exp_annotations": _annotations(alert, labels, value)}
        for labels, value in firing
    ]}  # fmt: skip


def _burn(slo: str, sli: str, burn: str) -> dict[str, str]:
    team = next(s.team for s in DEFAULT_SLOS if s.name == slo)
    return {**_SLO_LABELS, "team": team, "slo": slo, "sli": sli, "burn": burn}


SERIES: list[dict[str, str]] = [
    # authorize: 10 % of calls slow for an hour (budget 0.5 %: burn 20), then none.
    {"series": f'hopscope_slo_calls_total{{slo="authorize", {PROC}}}', "values": "0+100x480"},
    {"series": f'hopscope_slo_slow_calls_total{{slo="authorize", {PROC}}}',
     "values": "0+10x60 600+0x420"},
    {"series": f'hopscope_slo_failed_calls_total{{slo="authorize", {PROC}}}', "values": "0x480"},
    # clearing: 2 % slow throughout: burn 4, under both factors (14.4 and 6): never alerts.
    {"series": f'hopscope_slo_calls_total{{slo="clearing", {PROC}}}', "values": "0+100x480"},
    {"series": f'hopscope_slo_slow_calls_total{{slo="clearing", {PROC}}}', "values": "0+2x480"},
    {"series": f'hopscope_slo_failed_calls_total{{slo="clearing", {PROC}}}', "values": "0x480"},
    # risk-check: 5 % of calls fail for half an hour (budget 0.1 %), then none.
    {"series": f'hopscope_slo_calls_total{{slo="risk-check", {PROC}}}', "values": "0+100x480"},
    {"series": f'hopscope_slo_slow_calls_total{{slo="risk-check", {PROC}}}', "values": "0x480"},
    {"series": f'hopscope_slo_failed_calls_total{{slo="risk-check", {PROC}}}',
     "values": "0+5x30 150+0x450"},
    # payment-2 starts failing over at minute 5 (a series born with value 1), stops at 8;
    # payment-1's counter exists but never moves.
    {"series": f'hopscope_failovers_total{{service="gateway", from_node="payment-2", {PROC}}}',
     "values": "_x5 1 2 4 4x40"},
    {"series": f'hopscope_failovers_total{{service="gateway", from_node="payment-1", {PROC}}}',
     "values": "0x50"},
    # Lock waits: healthy (under 100 ms) until minute 10, over 250 ms until 30, healthy after;
    # 2PC prepare always healthy.
    *[{"series": f'hopscope_coordination_seconds_bucket{{kind="lock_wait", le="{le}", {PROC}}}',
       "values": values}
      for le, values in (("0.1", "0+10x10 100+0x20 100+10x20"),
                         ("0.25", "0+10x10 100+0x20 100+10x20"),
                         ("0.5", "0+10x10 100+10x20 300+10x20"),
                         ("+Inf", "0+10x10 100+10x20 300+10x20"))],
    *[{"series": f'hopscope_coordination_seconds_bucket{{kind="2pc.prepare", le="{le}", {PROC}}}',
       "values": "0+10x50"} for le in ("0.1", "0.25", "0.5", "+Inf")],
    # Lag on spans grows by 1000 a minute for 30 minutes, then drains; logs stays high, flat.
    {"series": f'hopscope_consumer_lag{{topic="spans", partition="0", {PROC}}}',
     "values": "0+1000x30 30000-2000x15 0x15"},
    {"series": f'hopscope_consumer_lag{{topic="logs", partition="0", {PROC}}}',
     "values": "20000x60"},
    # One undecodable message at minute 3.
    {"series": f'hopscope_dead_letters_total{{reason="undecodable", {PROC}}}',
     "values": "_x3 1x30"},
    # Elasticsearch away from minute 5 to 25.
    {"series": f"hopscope_sink_retries_total{{{PROC}}}", "values": "0x5 0+3x20 60x20"},
    # Open spans at 95 % of max_open_spans from minute 10 to 30; max_open_bytes unset (0).
    {"series": f"hopscope_open_spans{{{PROC}}}", "values": "1000x10 190000x20 1000x10"},
    {"series": f"hopscope_open_spans_limit{{{PROC}}}", "values": "200000x40"},
    {"series": f"hopscope_held_bytes{{{PROC}}}", "values": "5000x40"},
    {"series": f"hopscope_held_bytes_limit{{{PROC}}}", "values": "0x40"},
    # The processor unreachable from minute 10 to 20.
    {"series": f'up{{{PROC}}}', "values": "1x10 0x10 1x10"},
]  # fmt: skip

_P = {"instance": "p:9464"}

CASES: list[dict[str, Any]] = [
    # Fast burn: fires within minutes, resolves once the 5 m window is clean; clearing never.
    _case("HopscopeLatencyBudgetBurnFast", "1m", []),
    _case("HopscopeLatencyBudgetBurnFast", "10m", [(_burn("authorize", "latency", "fast"), "")]),
    _case("HopscopeLatencyBudgetBurnFast", "70m", []),
    # Slow burn: pending for 15 m first; still firing after the fast one resolved.
    _case("HopscopeLatencyBudgetBurnSlow", "10m", []),
    _case("HopscopeLatencyBudgetBurnSlow", "30m", [(_burn("authorize", "latency", "slow"), "")]),
    _case("HopscopeLatencyBudgetBurnSlow", "75m", [(_burn("authorize", "latency", "slow"), "")]),
    _case("HopscopeLatencyBudgetBurnSlow", "100m", []),
    _case("HopscopeErrorsBudgetBurnFast", "1m", []),
    _case("HopscopeErrorsBudgetBurnFast", "10m", [(_burn("risk-check", "errors", "fast"), "")]),
    _case("HopscopeErrorsBudgetBurnFast", "40m", []),
    _case("HopscopeErrorsBudgetBurnSlow", "10m", []),
    _case("HopscopeErrorsBudgetBurnSlow", "25m", [(_burn("risk-check", "errors", "slow"), "")]),
    _case("HopscopeErrorsBudgetBurnSlow", "70m", []),
    _case("HopscopeNodeFailingOver", "4m", []),
    _case("HopscopeNodeFailingOver", "5m", [({"severity": "page", "team": "payments",
                                             "service": "gateway", "from_node": "payment-2"},
                                            "1")]),
    _case("HopscopeNodeFailingOver", "9m", [({"severity": "page", "team": "payments",
                                             "service": "gateway", "from_node": "payment-2"},
                                            "4")]),
    _case("HopscopeNodeFailingOver", "20m", []),
    _case("HopscopeCoordinationWaitHigh", "8m", []),
    _case("HopscopeCoordinationWaitHigh", "20m", [({"severity": "ticket", "team": "payments",
                                                   "kind": "lock_wait"}, "")]),
    _case("HopscopeCoordinationWaitHigh", "45m", []),
    _case("HopscopeConsumerLagGrowing", "20m", []),
    _case("HopscopeConsumerLagGrowing", "30m", [({"severity": "page", "team": "observability",
                                                 "topic": "spans"}, "")]),
    _case("HopscopeConsumerLagGrowing", "50m", []),
    _case("HopscopeDeadLetters", "2m", []),
    _case("HopscopeDeadLetters", "4m", [({"severity": "ticket", "team": "observability",
                                         "reason": "undecodable"}, "1")]),
    _case("HopscopeDeadLetters", "20m", []),
    _case("HopscopeElasticsearchRetrying", "10m", []),
    _case("HopscopeElasticsearchRetrying", "20m", [({"severity": "page",
                                                    "team": "observability", **_P}, "")]),
    _case("HopscopeElasticsearchRetrying", "40m", []),
    _case("HopscopeOpenTracesNearBound", "5m", []),
    _case("HopscopeOpenTracesNearBound", "20m", [({"severity": "ticket",
                                                  "team": "observability", **_P}, "")]),
    _case("HopscopeOpenTracesNearBound", "35m", []),
    _case("HopscopeProcessorDown", "5m", []),
    _case("HopscopeProcessorDown", "18m", [({"severity": "page", "team": "observability",
                                            "job": "hopscope-processors", **_P}, "")]),
    _case("HopscopeProcessorDown", "25m", []),
]  # fmt: skip


def test_every_alert_has_promtool_cases() -> None:
    tested = {case["alertname"] for case in CASES}
    assert tested == set(alerts.alert_names())
    for name in tested:
        outcomes = [bool(case["exp_alerts"]) for case in CASES if case["alertname"] == name]
        # Quiet before, firing, and quiet again after (resolved).
        assert outcomes[0] is False and True in outcomes and outcomes[-1] is False, name


def test_promtool_unit_tests_every_alert(tmp_path: Path) -> None:
    rules = alerts.write_rules(tmp_path / "rules")
    spec = {
        "rule_files": [str(path) for path in rules],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": SERIES, "alert_rule_test": CASES}],
    }
    test_file = tmp_path / "hopscope.test.yml"
    test_file.write_text(json.dumps(spec, indent=1, ensure_ascii=False))  # JSON is YAML
    proc = subprocess.run([_promtool(), "test", "rules", str(test_file)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the SLI counters ----------------------------------------------------------------------


def _sample(metrics: Any, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


def test_sli_counters_count_calls_against_each_slo_threshold() -> None:
    from types import SimpleNamespace

    from hopscope.processors.metrics import ProcessorMetrics

    slos = (SLO("fast", "payment", "risk", 0.025, 0.99, 0.999),
            SLO("lenient", "payment", "risk", 0.1, 0.99, 0.999))  # fmt: skip
    metrics = ProcessorMetrics(slos)
    # Zero before any traffic: the burn-rate rules see 0/0, not a missing series.
    assert metrics.registry.get_sample_value("hopscope_slo_calls_total", {"slo": "fast"}) == 0

    def hop(ms: float, error: bool = False, target: str = "risk") -> Any:
        return SimpleNamespace(source_service="payment", target_service=target,
                               client_ns=int(ms * 1e6), network_ns=None, error=error)  # fmt: skip

    records = SimpleNamespace(
        hops=[hop(5), hop(40), hop(200, error=True), hop(500, target="clearing")],
        failovers=[SimpleNamespace(service="gateway", from_node="payment-2")] * 2,
        coordination=[SimpleNamespace(kind="lock_wait", duration_ns=300_000_000)],
    )
    metrics.observe_records(records)
    assert _sample(metrics, "hopscope_slo_calls_total", slo="fast") == 3
    assert _sample(metrics, "hopscope_slo_slow_calls_total", slo="fast") == 2
    assert _sample(metrics, "hopscope_slo_slow_calls_total", slo="lenient") == 1
    assert _sample(metrics, "hopscope_slo_failed_calls_total", slo="lenient") == 1
    assert _sample(metrics, "hopscope_failovers_total", service="gateway",
                   from_node="payment-2") == 2  # fmt: skip
    assert _sample(metrics, "hopscope_coordination_seconds_count", kind="lock_wait") == 1


def test_alerts_generate_and_process_read_the_config_slos(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hopscope.cli.app import app

    config = tmp_path / "hopscope.toml"
    config.write_text("[slo.risk-check]\nthreshold_ms = 40\n[slo.issuer]\nenabled = false\n")
    result = CliRunner().invoke(app, ["--config", str(config), "alerts", "generate",
                                      "--deploy-dir", str(tmp_path / "deploy")])  # fmt: skip
    assert result.exit_code == 0, result.output
    rules = (tmp_path / "deploy" / "prometheus" / "rules" / alerts.SLO_FILE).read_text()
    assert "calls slower than 40 ms" in rules and 'slo="issuer"' not in rules
    assert (tmp_path / "deploy" / "alertmanager" / "alertmanager.yml").is_file()

    config.write_text("[slo.risk-check]\nlatency_objective = 100\n")
    result = CliRunner().invoke(app, ["--config", str(config), "alerts", "generate",
                                      "--deploy-dir", str(tmp_path / "deploy")])  # fmt: skip
    assert result.exit_code != 0 and "latency_objective" in result.output


def test_amtool_accepts_the_alertmanager_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (Debian: prometheus-alertmanager)")
    config = DEPLOY / alerts.ALERTMANAGER_FILE
    proc = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
