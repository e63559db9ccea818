"""What every dataset converter shares: where incidents go and how one is written.

An incident is a folder ``$HOPSCOPE_CACHE_DIR/datasets/<dataset>/<case>/`` holding
``traces.json`` (Jaeger JSON, or OTLP/JSON with one ExportTraceServiceRequest a line: what
``hopscope analyze --file`` reads) and ``incident.json``::

    {"dataset": ..., "case": ..., "fault_type": ..., "root_cause_service": ...,
     "incident": [iso_start, iso_end], "baseline": [iso_start, iso_end]}

``baseline`` is a fault-free window of the same system (the traffic just before the fault);
``benchmarks/rca_accuracy.py`` assigns a trace to a window by its start time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hopscope.core.settings import default_cache_dir

LABEL_KEYS = ("dataset", "case", "fault_type", "root_cause_service", "incident", "baseline")


def cache_dir() -> Path:
    """``$HOPSCOPE_CACHE_DIR/datasets`` (default ``~/.cache/hopscope/datasets``)."""
    return default_cache_dir() / "datasets"


def write_incident(folder: Path, traces: Any, label: Mapping[str, Any]) -> None:
    """Write ``traces.json`` (a JSON document) and ``incident.json`` into ``folder``."""
    missing = [key for key in LABEL_KEYS if key not in label]
    if missing:
        raise ValueError(f"incident label {label.get('case')!r} lacks {missing}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "traces.json").write_text(json.dumps(traces), encoding="utf-8")
    text = json.dumps(dict(label), indent=2) + "\n"
    (folder / "incident.json").write_text(text, encoding="utf-8")
