"""Convert the ShapleyIQ Train Ticket fault-injection cases into labelled hopscope incidents.

Source: the public repository ``lonyle/ShapleyIQ`` (ASPLOS '23, "ShapleyIQ: Influence
Quantification by Shapley Values for Performance Debugging of Microservices"). Its
``rca4tracing/rca/experiment/input_data/experiment_jaeger/<case>/rca_data.pickle`` files each
hold one fault-injection case on Train Ticket: Jaeger spans of the traces recorded *before* the
injection (``normal_trace_dicts``), of the traces recorded *during* it
(``abnormal_trace_dict``), the injected service (``root_causes``) and the injected delay in ms
(``anomaly_conditions``; ChaosBlade ``network delay`` on the service's container).

Steps (matched by ``Step N`` comments below):

1. List the case pickles present in the snapshot (files of 4 MiB and more are absent from
   snapshots; those cases are skipped) and pick ``--cases`` of them, round-robin over the
   injected services so that every service is represented.
2. Read each pickle with a restricted unpickler: the repository's own classes become inert
   attribute bags and numpy scalars are decoded by hand; any other global is refused, so no
   code from the pickle runs.
3. Write ``traces.json`` (one Jaeger JSON document, normal traces then faulty ones) and
   ``incident.json`` (labels and the two windows) to
   ``$HOPSCOPE_CACHE_DIR/datasets/shapleyiq-trainticket/<case>/``.

    python benchmarks/datasets/shapleyiq_trainticket.py /work/.mirror/lonyle+ShapleyIQ/repo

The path is the git directory that ``fetch github:lonyle/ShapleyIQ`` returned; the script
reads it with ``git`` and never reaches the network.
"""

from __future__ import annotations

import argparse
import io
import pickle
import struct
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from _common import cache_dir, write_incident

DATASET = "shapleyiq-trainticket"
CASES_DIR = "rca4tracing/rca/experiment/input_data/experiment_jaeger/"
FAULT_TYPE = "network_delay"
# Enough cases for every injected service to appear a few times while a benchmark run on two
# shared cores stays within minutes; --cases 0 converts every case present.
DEFAULT_CASES = 40


class _Bag:
    """Stands in for a class of the source repository: keeps the pickled state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


class _DType:
    """Stands in for ``numpy.dtype``: only the type code is needed to decode a scalar."""

    def __init__(self, code: str, *args: Any) -> None:
        self.code = code

    def __setstate__(self, state: Any) -> None:
        self.state = state


_SCALAR_FORMATS = {"f8": "<d", "f4": "<f", "i8": "<q", "i4": "<i", "u8": "<Q", "b1": "<?"}


def _scalar(dtype: _DType, data: bytes = b"") -> Any:
    fmt = _SCALAR_FORMATS.get(dtype.code)
    return struct.unpack(fmt, data)[0] if fmt else None


class _SafeUnpickler(pickle.Unpickler):
    """Builds only containers, inert bags and decoded numpy scalars."""

    _ALLOWED: ClassVar = frozenset(
        {("collections", "OrderedDict"), ("collections", "defaultdict"), ("builtins", "set")}
    )

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("rca4tracing") or module == "__main__":
            return type(name, (_Bag,), {})
        if module.startswith("numpy") and name == "scalar":
            return _scalar
        if module.startswith("numpy") and name == "dtype":
            return _DType
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _git(snapshot: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(snapshot), *args], check=True, capture_output=True
    ).stdout


def list_cases(snapshot: Path) -> list[str]:
    """Case ids whose pickle is present in the snapshot (large blobs may be missing)."""
    listing = _git(snapshot, "ls-tree", "-r", "HEAD", CASES_DIR).decode()
    blobs = {}
    for line in listing.splitlines():
        meta, path = line.split("\t", 1)
        if path.endswith("/rca_data.pickle"):
            blobs[meta.split()[2]] = path.split("/")[-2]
    # One batch query: a blob the snapshot lacks answers "missing".
    check = subprocess.run(
        ["git", "--git-dir", str(snapshot), "cat-file", "--batch-check"],
        input="\n".join(blobs).encode(),
        check=True,
        capture_output=True,
    ).stdout.decode()
    present = [line.split()[0] for line in check.splitlines() if not line.endswith("missing")]
    return sorted(blobs[blob] for blob in present if blob in blobs)


def read_case(snapshot: Path, case: str) -> dict[str, Any]:
    """The attributes of one case's pickled ``RCADataJaeger`` object."""
    raw = _git(snapshot, "cat-file", "blob", f"HEAD:{CASES_DIR}{case}/rca_data.pickle")
    loaded = _SafeUnpickler(io.BytesIO(raw)).load()
    # A few cases were pickled empty (None): no label, nothing to convert.
    return dict(loaded.__dict__) if isinstance(loaded, _Bag) else {}


def _jaeger_trace(trace_id: str, spans: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One Jaeger trace; processes rebuilt from ``serviceName`` (the source keeps them flat)."""
    out, processes = [], {}
    for span in spans:
        service = str(span["serviceName"])
        processes[service] = {"serviceName": service, "tags": []}
        out.append({
            "traceID": trace_id, "spanID": span["spanID"],
            "operationName": span.get("operationName", ""),
            "references": span.get("references") or [],
            "startTime": int(span["startTime"]), "duration": int(span["duration"]),
            "tags": span.get("tags") or [], "logs": span.get("logs") or [],
            "processID": service,
        })  # fmt: skip
    return {"traceID": trace_id, "spans": out, "processes": processes}


def _window(traces: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """(first start, last end) in Unix µs over every span of ``traces``."""
    spans = [s for t in traces for s in t["spans"]]
    return min(s["startTime"] for s in spans), max(s["startTime"] + s["duration"] for s in spans)


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def convert_case(case: str, data: Mapping[str, Any], out: Path) -> dict[str, Any] | None:
    """Write one case; None (and nothing written) when it has no usable label or window."""
    causes = list(data.get("root_causes") or [])
    normal = dict(data.get("normal_trace_dicts") or {})
    abnormal = {k: v for k, v in dict(data.get("abnormal_trace_dict") or {}).items()
                if k not in normal}  # fmt: skip
    if len(causes) != 1 or not normal or not abnormal:
        return None
    normal_traces = [_jaeger_trace(k, v) for k, v in normal.items() if v]
    abnormal_traces = [_jaeger_trace(k, v) for k, v in abnormal.items() if v]
    base_start, base_end = _window(normal_traces)
    inc_start, inc_end = _window(abnormal_traces)
    # Windows are assigned by trace start (the benchmark's rule): the baseline ends where the
    # first faulty trace starts, even if a normal trace ran past it.
    base_end = min(base_end, inc_start)
    if base_start >= base_end:
        return None
    delay = dict(data.get("anomaly_conditions") or {}).get(causes[0])
    label = {
        "dataset": DATASET, "case": case, "fault_type": FAULT_TYPE,
        "root_cause_service": causes[0],
        "incident": [_iso(inc_start), _iso(inc_end)],
        "baseline": [_iso(base_start), _iso(base_end)],
        "injected_delay_ms": delay,
    }  # fmt: skip
    write_incident(out / case, {"data": normal_traces + abnormal_traces}, label)
    return label


def pick(cases: list[str], services: Mapping[str, str], limit: int) -> list[str]:
    """Round-robin over injected services (sorted), cases in id order within each."""
    by_service: dict[str, list[str]] = defaultdict(list)
    for case in cases:
        by_service[services[case]].append(case)
    picked: list[str] = []
    queues = [by_service[s] for s in sorted(by_service)]
    while queues and (limit <= 0 or len(picked) < limit):
        for queue in queues:
            if queue and (limit <= 0 or len(picked) < limit):
                picked.append(queue.pop(0))
        queues = [q for q in queues if q]
    return picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("snapshot", type=Path, help="git directory of the fetched lonyle/ShapleyIQ")
    parser.add_argument("--cases", type=int, default=DEFAULT_CASES, help="0: every case")
    args = parser.parse_args()
    out = cache_dir() / DATASET
    # Step 1: the cases present; their labels need a read, so the pick reads each case once.
    cases = list_cases(args.snapshot)
    labels: dict[str, str] = {}
    loaded: dict[str, dict[str, Any]] = {}
    for case in cases:
        # Step 2: restricted unpickling.
        data = read_case(args.snapshot, case)
        causes = data.get("root_causes") or []
        if len(causes) == 1:
            labels[case] = str(causes[0])
            loaded[case] = data
        if args.cases > 0 and len(loaded) >= args.cases * 4:
            break  # enough to pick a balanced subset from; reading all ~1000 takes minutes
    written = 0
    for case in pick(sorted(labels), labels, args.cases):
        # Step 3: traces.json and incident.json.
        if convert_case(case, loaded[case], out) is not None:
            written += 1
    print(f"{written} incidents of {len(cases)} cases present written to {out}")


if __name__ == "__main__":
    main()
