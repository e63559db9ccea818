"""Root-cause accuracy: does ``report`` name the faulty service, compared with a naive baseline?

Labelled incidents (a fault window, a fault-free baseline window of the same system, the
injected service):

- every ``$HOPSCOPE_CACHE_DIR/datasets/<dataset>/<case>/`` written by a converter of
  ``benchmarks/datasets/`` (``traces.json`` + ``incident.json``; see its README);
- with ``--lab-dir DIR``, every ``hopscope lab run`` state directory under DIR: each
  ``ground-truth-<fault>.json`` with the Parquet archive beside it (``archive/``, written by
  the lab's processors), read with the ground truth's incident and baseline bounds; the
  ground truth's service is the root cause; the control run (``none``) has none and is left
  out;
- the simulator scenarios, generated in memory: a ``baseline`` run, then the faulty scenario
  just after it (``--sim-traces`` payments each).

Steps (matched by ``Step N`` comments below):

1. Load each incident and split its records into the incident and baseline windows by trace
   start time (the first span of the trace), whatever the loader's own time options.
2. Run hopscope's report on the incident window, with ``baseline=`` when
   ``build_report`` accepts one (checked with ``inspect.signature``), and rank services.
3. Rank services with the naive baseline (:func:`naive_ranking`) on the same two windows.
4. Score top-1 / top-3 per dataset and fault type; print a table (or ``--json``).

Scoring rule (:func:`ranked_services`): walk the report's findings in rank order; each names
``subject["service"]``, else ``subject["target_service"]`` (an edge finding blames its callee:
the wire into a service and the service itself are one suspect at service level), else
``subject["participant"]``; findings naming none (e.g. a tail attribute) are skipped. The first
occurrence of each service keeps its rank. A case is a top-k hit when the labelled
``root_cause_service`` is among the first k distinct services.

    python benchmarks/rca_accuracy.py [--datasets-dir DIR] [--lab-dir DIR] [--sim-traces 400]
        [--sim-seeds 3] [--no-sim]
        [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from rich.table import Table

from hopscope.analysis.findings import Finding
from hopscope.analysis.loaders import dataset_from_records, load_file, load_parquet
from hopscope.analysis.report import build_report
from hopscope.analysis.schema import Dataset
from hopscope.core.settings import default_cache_dir
from hopscope.ingest.simulator import Scenario, SimulationConfig, parse_iso8601_ns, simulate
from hopscope.processors.decode import decode_logs, decode_spans

SIM_DATASET = "simulator"
SIM_START_NS = parse_iso8601_ns("2026-03-02T10:00:00Z")
# The faulty run starts this long after the baseline run's last span, as a new minute would.
SIM_GAP_NS = 1_000_000_000
# Arrivals per virtual second where the default rate hides the fault (as the analysis tests).
SIM_RATES = {Scenario.LOCK_CONTENTION: 300.0, Scenario.LB_SKEW: 200.0}
# The service a person should be sent to for each scenario. slow-hop is an edge fault
# (payment → risk): the edge-finding rule names the callee. slow-replica: the lagging replica
# is an uninstrumented database; payment is the service whose balance reads it serves.
# lb-skew: the overloaded node is a payment node.
SIM_ROOT_CAUSE = {
    Scenario.NODE_FAILURE: "payment",
    Scenario.SLOW_HOP: "risk",
    Scenario.LOCK_CONTENTION: "clearing",
    Scenario.SLOW_REPLICA: "payment",
    Scenario.CACHE_DEGRADATION: "risk",
    Scenario.LB_SKEW: "payment",
    Scenario.CLOCK_SKEW: "risk",
}
TOP_K = (1, 3)


@dataclass(frozen=True)
class Incident:
    """One labelled incident, its records already split into the two windows."""

    dataset: str
    case: str
    fault_type: str
    root_cause_service: str
    incident: Dataset
    baseline: Dataset


@dataclass(frozen=True)
class Outcome:
    """The ranked services of both methods for one incident."""

    dataset: str
    case: str
    fault_type: str
    root_cause_service: str
    hopscope: list[str]
    naive: list[str]
    seconds: float


# -- scoring ---------------------------------------------------------------------------------


def finding_service(finding: Finding) -> str | None:
    """The service a finding names (see the scoring rule in the module docstring)."""
    for key in ("service", "target_service", "participant"):
        value = finding.subject.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def ranked_services(findings: Sequence[Finding]) -> list[str]:
    """Distinct services in the order the ranked findings first name them."""
    ranked: list[str] = []
    for finding in findings:
        service = finding_service(finding)
        if service is not None and service not in ranked:
            ranked.append(service)
    return ranked


def hit(ranked: Sequence[str], truth: str, k: int) -> bool:
    """Whether ``truth`` is among the first ``k`` ranked services."""
    return truth in ranked[:k]


# -- naive baseline --------------------------------------------------------------------------


def naive_ranking(incident: pl.LazyFrame, baseline: pl.LazyFrame) -> list[str]:
    """Services by growth of mean self time, client-span time charged to the callee.

    Self time is a span's duration minus its children's; a CLIENT span's self time (the wire
    and any wait the server did not record) is charged to the service of its child, the
    callee. Growth is the mean self time (ms) in ``incident`` minus that in ``baseline``
    (0 for a service absent from it); largest growth first.
    """

    def mean_self(spans: pl.LazyFrame) -> pl.LazyFrame:
        children = spans.select("trace_id", pl.col("parent_id").alias("span_id"),
                                pl.col("duration_ns").alias("child_ns"),
                                pl.col("service").alias("child_service"))  # fmt: skip
        per_parent = children.group_by("trace_id", "span_id").agg(
            pl.col("child_ns").sum(), pl.col("child_service").first()
        )
        return (
            spans.join(per_parent, on=["trace_id", "span_id"], how="left")
            .with_columns(
                self_ns=pl.col("duration_ns") - pl.col("child_ns").fill_null(0),
                charged=pl.when(
                    (pl.col("kind").str.to_lowercase() == "client")
                    & pl.col("child_service").is_not_null()
                )
                .then(pl.col("child_service"))
                .otherwise(pl.col("service")),
            )
            .group_by(pl.col("charged").alias("service"))
            .agg(mean_ms=pl.col("self_ns").mean() / 1e6)
        )

    after, before = mean_self(incident), mean_self(baseline)
    growth = after.join(before, on="service", how="left", suffix="_before").with_columns(
        growth=pl.col("mean_ms") - pl.col("mean_ms_before").fill_null(0.0)
    )
    return growth.sort("growth", "service", descending=[True, False]).collect()["service"].to_list()


# -- incidents -------------------------------------------------------------------------------


def split_windows(
    data: Dataset, incident: tuple[int, int], baseline: tuple[int, int]
) -> tuple[Dataset, Dataset]:
    """(incident, baseline) datasets: whole traces assigned by their first span's start (ns)."""
    starts = data.spans.group_by("trace_id").agg(start=pl.col("time").min())
    epoch = pl.col("start").cast(pl.Datetime("ns", "UTC")).dt.epoch("ns")

    def window(bounds: tuple[int, int]) -> Dataset:
        ids = starts.filter(epoch.is_between(bounds[0], bounds[1], closed="left")).select(
            "trace_id"
        )
        frames = {f.name: getattr(data, f.name).join(ids, on="trace_id", how="semi")
                  for f in fields(data)}  # fmt: skip
        return Dataset(**frames).collect()

    return window(incident), window(baseline)


def _ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1e9)


def file_incidents(root: Path, limit: int) -> Iterator[Incident]:
    """The converted incidents under ``root`` (``<dataset>/<case>/incident.json``)."""
    per_dataset: dict[str, int] = defaultdict(int)
    for label_path in sorted(root.glob("*/*/incident.json")):
        label = json.loads(label_path.read_text(encoding="utf-8"))
        if limit and per_dataset[label["dataset"]] >= limit:
            continue
        per_dataset[label["dataset"]] += 1
        traces = [p for p in label_path.parent.iterdir() if p.name != "incident.json"]
        # One file per call: today's load_file takes one path.
        data = _concat([load_file(p) for p in sorted(traces)])
        window = (_ns(label["incident"][0]), _ns(label["incident"][1]) + 1)
        base = (_ns(label["baseline"][0]), _ns(label["baseline"][1]) + 1)
        incident, baseline = split_windows(data, window, base)
        yield Incident(label["dataset"], label["case"], label["fault_type"],
                       label["root_cause_service"], incident, baseline)  # fmt: skip


LAB_DATASET = "lab"


def lab_incidents(root: Path) -> Iterator[Incident]:
    """The saved lab runs under ``root``: each ground truth, its windows from the archive."""
    for truth_path in sorted(root.rglob("ground-truth-*.json")):
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        service = (truth.get("where") or {}).get("service")
        archive = truth_path.parent / "archive"
        if not service or not archive.is_dir():
            continue

        # Step 1: both windows' records, split by trace start like the other datasets.
        data = load_parquet(archive, since=_moment(truth["baseline"]["from"]),
                            until=_moment(truth["to"]), progress=False)  # fmt: skip
        window = (_ns(truth["from"]), _ns(truth["to"]))
        base = (_ns(truth["baseline"]["from"]), _ns(truth["baseline"]["to"]))
        incident, baseline = split_windows(data, window, base)
        yield Incident(LAB_DATASET, f"{truth_path.parent.name}/{truth['fault']}",
                       str(truth["fault"]), str(service), incident, baseline)  # fmt: skip


def _moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _concat(parts: Sequence[Dataset]) -> Dataset:
    if len(parts) == 1:
        return parts[0]
    return Dataset(**{f.name: pl.concat([getattr(p, f.name) for p in parts])
                      for f in fields(Dataset)})  # fmt: skip


@functools.cache
def _simulate(scenario: Scenario, start_ns: int, traces: int, seed: int) -> tuple[Dataset, int]:
    """One simulator run as a collected dataset, and the end of its last span (ns)."""
    span_exporter = InMemorySpanExporter()
    log_exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    config = SimulationConfig(start_ns=start_ns, scenario=scenario, seed=seed,
                              run_id=f"bench-{scenario.value}-{seed}", traces=traces,
                              rate=SIM_RATES.get(scenario, 100.0))  # fmt: skip
    result = simulate(config, span_processors=[SimpleSpanProcessor(span_exporter)],
                      log_processors=[SimpleLogRecordProcessor(log_exporter)])  # fmt: skip
    spans = decode_spans(encode_spans(span_exporter.get_finished_spans()).SerializeToString())
    logs = decode_logs(encode_logs(log_exporter.get_finished_logs()).SerializeToString())
    return dataset_from_records(spans, logs).collect(), result.end_ns


def simulator_incidents(traces: int, seeds: int = 1) -> Iterator[Incident]:
    """Each fault scenario after a baseline run at the same rate (the window before), once per
    seed (``seeds`` different random payments, node choices and timings per scenario)."""
    for index in range(seeds):
        for scenario, truth in SIM_ROOT_CAUSE.items():
            baseline, end_ns = _simulate(Scenario.BASELINE, SIM_START_NS, traces, seed=11 + index)
            incident, _ = _simulate(scenario, end_ns + SIM_GAP_NS, traces, seed=7 + index)
            case = scenario.value if seeds == 1 else f"{scenario.value}#{index}"
            yield Incident(SIM_DATASET, case, scenario.value, truth, incident, baseline)


# -- run -------------------------------------------------------------------------------------


def report_findings(incident: Incident) -> list[Finding]:
    """``build_report`` on the incident window, with the baseline window when it takes one."""
    kwargs: dict[str, Any] = {"source": f"{incident.dataset}/{incident.case}", "progress": False}
    if "baseline" in inspect.signature(build_report).parameters:
        kwargs["baseline"] = incident.baseline
    return list(build_report(incident.incident, **kwargs).findings)


def evaluate(incident: Incident) -> Outcome:
    started = time.perf_counter()
    hopscope = ranked_services(report_findings(incident))
    naive = naive_ranking(incident.incident.spans, incident.baseline.spans)
    return Outcome(incident.dataset, incident.case, incident.fault_type,
                   incident.root_cause_service, hopscope, naive,
                   time.perf_counter() - started)  # fmt: skip


def summarize(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """One row per dataset and fault type, then one ``(all)`` row per dataset."""
    groups: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[(o.dataset, o.fault_type)].append(o)
        groups[(o.dataset, "(all)")].append(o)
    rows = []
    for (dataset, fault), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] == "(all)", kv[0][1])
    ):
        row: dict[str, Any] = {"dataset": dataset, "fault_type": fault, "cases": len(group)}
        for method in ("hopscope", "naive"):
            for k in TOP_K:
                hits = sum(hit(getattr(o, method), o.root_cause_service, k) for o in group)
                row[f"{method}_top{k}"] = round(hits / len(group), 3)
        rows.append(row)
    return rows


def render(rows: Sequence[Mapping[str, Any]], console: Console) -> None:
    table = Table(title="Root-cause accuracy: hopscope report vs naive self-time growth")
    for name in ("dataset", "fault type", "cases", "hopscope top-1", "hopscope top-3",
                 "naive top-1", "naive top-3"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("dataset", "fault type") else "right")
    for row in rows:
        table.add_row(row["dataset"], row["fault_type"], str(row["cases"]),
                      *(f"{row[f'{m}_top{k}']:.0%}" for m in ("hopscope", "naive") for k in TOP_K),
                      end_section=row["fault_type"] == "(all)")  # fmt: skip
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets-dir", type=Path, default=default_cache_dir() / "datasets")
    parser.add_argument("--sim-traces", type=int, default=400, help="payments per window")
    parser.add_argument(
        "--sim-seeds",
        type=int,
        default=3,
        help="runs of each simulator scenario, with different seeds",
    )
    parser.add_argument("--lab-dir", type=Path, help="saved `hopscope lab run` state dirs")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulator scenarios")
    parser.add_argument("--limit", type=int, default=0, help="at most N cases per dataset")
    parser.add_argument("--json", action="store_true", help="rows and per-case outcomes as JSON")
    parser.add_argument("--cases", action="store_true", help="also print each case's rankings")
    args = parser.parse_args()
    err = Console(stderr=True)
    sources: list[Iterator[Incident]] = [file_incidents(args.datasets_dir, args.limit)]
    if args.lab_dir:
        sources.append(lab_incidents(args.lab_dir))
    if not args.no_sim:
        sources.append(simulator_incidents(args.sim_traces, args.sim_seeds))
    outcomes = []
    for source in sources:
        for incident in source:
            # Step 2 and 3 on the windows Step 1 produced.
            outcome = evaluate(incident)
            outcomes.append(outcome)
            err.print(f"{outcome.dataset}/{outcome.case}: truth {outcome.root_cause_service}; "
                      f"hopscope {outcome.hopscope[:3]}; naive {outcome.naive[:3]} "
                      f"({outcome.seconds:.1f} s)", highlight=False)  # fmt: skip
    if not outcomes:
        sys.exit("no labelled incidents: run a converter of benchmarks/datasets/ or drop --no-sim")
    # Step 4: the table.
    rows = summarize(outcomes)
    if args.json:
        print(json.dumps({"rows": rows, "cases": [o.__dict__ for o in outcomes]}, indent=2))
    else:
        out = Console()
        # A pipe gets 80 columns by default: too narrow for the fault types.
        render(rows, out if out.is_terminal else Console(width=120))


if __name__ == "__main__":
    main()
