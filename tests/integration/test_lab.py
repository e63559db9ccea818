"""The reference payment system end to end: real services instrumented only with the standard
OpenTelemetry instrumentations, the real Collector writing to Kafka, Postgres primary and
replica, Redis, and faults injected by real tools (``hopscope lab``).

One lab is started for the module; the faults are driven one after another on it (each with
a baseline before it), the topics are processed once, and each fault's report (against its
own baseline) must name the injected cause among its top findings. Then the PAN audit: no
Luhn-valid card number in any of the lab's indices, while the masked forms of the load
generator's test cards are there (the audit cannot pass by dropping them).

Needs ``postgresql-15``, ``redis-server`` and the Collector (built once by
``deploy/reference/otelcol/build-collector.sh``, cached under HOPSCOPE_CACHE_DIR); marked
``lab`` so a quick local run can leave it out (``-m "not lab"``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hopscope import lab
from hopscope.ingest.redaction import luhn_valid
from tests.conftest import Services

pytestmark = [pytest.mark.integration, pytest.mark.lab]

# Seconds of traffic per fault (a quarter warm-up, a quarter baseline, half fault) and the
# payment rate: about 200 payments in each fault window, enough for the comparison's tests.
FAULT_S = 44.0
RATE = 10.0
# The switchover last: it leaves the lab without a replica.
FAULTS = ("node-kill", "latency", "lock-contention", "replica-lag", "cache-flush", "switchover")
# Where each fault's cause must show: (finding subject key, value) pairs, one of which a
# finding among the top three carries.
EXPECTED: dict[str, list[tuple[str, str]]] = {
    "node-kill": [("node", "payment-2")],
    "latency": [("service", "bank"), ("edge", "payment → bank"), ("callee", "bank")],
    "lock-contention": [("service", "ledger")],
    "replica-lag": [("service", "ledger")],
    "cache-flush": [("service", "risk")],
    "switchover": [("node", "ledger-primary")],
}
TOP = 3
# The load generator's card numbers: its test issuer prefixes and 16 digits in all, standing
# alone (not inside a hex id; timestamps in nanoseconds start otherwise).
_LAB_PAN = re.compile(
    r"(?<![0-9A-Za-z])(?:411111|555555|378282|601111|400000)\d{10}(?![0-9A-Za-z])"
)


@pytest.fixture(scope="module")
def lab_run(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The lab, every fault of :data:`FAULTS` driven, the topics processed once, a report
    per fault."""
    import os
    import uuid

    run = uuid.uuid4().hex[:8]
    state_dir = tmp_path_factory.mktemp("lab")
    options = lab.LabOptions(
        state_dir=state_dir,
        spans_topic=f"t-lab-{run}.otlp_spans",
        logs_topic=f"t-lab-{run}.otlp_logs",
        index_prefix=f"t-lab-{run}",
    )
    previous = {k: os.environ.get(k) for k in ("HOPSCOPE_KAFKA_BOOTSTRAP", "HOPSCOPE_ES_URL")}
    os.environ["HOPSCOPE_KAFKA_BOOTSTRAP"] = services.kafka_bootstrap
    os.environ["HOPSCOPE_ES_URL"] = services.es_url
    es = Elasticsearch(services.es_url, request_timeout=60)
    try:
        state = lab.up(options)
        try:
            truths = {
                fault: lab.drive(state, fault, FAULT_S, rate=RATE, progress=lambda _: None)
                for fault in FAULTS
            }
            lab.process(options, state, group=f"t-lab-{run}")
        finally:
            lab.down(state_dir)
        reports = {fault: lab.report(options, truth)[0] for fault, truth in truths.items()}
        yield {"truths": truths, "reports": reports, "prefix": options.index_prefix, "es": es}
    finally:
        es.indices.delete(index=f"{options.index_prefix}-*", ignore_unavailable=True)
        es.close()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _names(finding: dict[str, Any]) -> str:
    return json.dumps([finding.get("subject"), finding.get("title")], ensure_ascii=False)


def _names_cause(finding: dict[str, Any], expected: list[tuple[str, str]]) -> bool:
    subject = finding.get("subject") or {}
    return any(str(subject.get(k)) == v or v in str(finding.get("title")) for k, v in expected)


@pytest.mark.parametrize("fault", FAULTS)
def test_the_top_findings_name_the_injected_cause(lab_run: dict[str, Any], fault: str) -> None:
    findings = lab.top_findings(lab_run["reports"][fault], TOP)
    told = [_names(f) for f in findings]
    assert findings, f"{fault}: no finding"
    assert any(
        f.get("impact") in {"high", "medium"} and _names_cause(f, EXPECTED[fault]) for f in findings
    ), f"{fault}: ground truth {lab_run['truths'][fault]['where']}, top findings {told}"


def test_no_card_number_in_any_lab_index(lab_run: dict[str, Any]) -> None:
    es: Elasticsearch = lab_run["es"]
    es.indices.refresh(index=f"{lab_run['prefix']}-*")
    found: list[str] = []
    masked = 0
    documents = 0
    for kind in ("spans", "logs", "hops", "traces", "failovers", "coordination"):
        page = es.search(index=f"{lab_run['prefix']}-{kind}-*", size=1000, scroll="2m",
                         query={"match_all": {}}, ignore_unavailable=True)  # fmt: skip
        scroll_id = page.get("_scroll_id")
        while page["hits"]["hits"]:
            for hit in page["hits"]["hits"]:
                documents += 1
                text = json.dumps(hit["_source"])
                found += [d for d in _LAB_PAN.findall(text) if luhn_valid(d)]
                masked += len(re.findall(r"\d{6}\*{6}\d{4}", text))
            page = es.scroll(scroll_id=scroll_id, scroll="2m")
            scroll_id = page.get("_scroll_id")
        if scroll_id:
            es.clear_scroll(scroll_id=scroll_id)
    assert documents > 1000
    assert found == []
    # The test cards were there, masked: in URLs (url.full, url.path), log bodies.
    assert masked > 100


def test_ground_truth_files_say_what_where_and_when(lab_run: dict[str, Any]) -> None:
    for fault, truth in lab_run["truths"].items():
        assert truth["fault"] == fault
        assert truth["from"] < truth["to"]
        assert truth["baseline"]["to"] == truth["from"]
        assert set(truth["where"]) == {"service", "node", "resource"}
        assert sum(truth["load"]["outcomes"].values()) > 0
