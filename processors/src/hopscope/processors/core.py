"""Which per-span core decodes OTLP protobuf: the native extension or the Python reference.

The one place that decides. The native core (``hopscope_native``, a Rust extension built from
``processors/native/`` by ``make install``) turns an OTLP protobuf request into the same span
and log records as :mod:`hopscope.processors.decode`, card numbers masked, limits applied, at
a fraction of the CPU. It is used when it is importable and ``HOPSCOPE_NATIVE`` is not ``0``;
otherwise, and for every message the native core hands back (OTLP/JSON, invalid UTF-8, a
malformed or empty request, a rejected span, an attribute map past its limits), the Python
reference decodes. ``tests/unit/test_native_differential.py`` holds the two to the same records,
document for document.

The same choice covers the per-trace work the native core does: span, log, hop,
coordination-delay and trace documents (:mod:`hopscope.processors.documents`), the trace's tree
index (``derive._common.TraceIndex._build``), the critical path's walk
(``derive.critical_path._walked``), the hops (``derive.hops._hops``), what the trace summary
reads from the spans (``derive.summary._facts``), the coordination delays and 2PC transactions
(``derive.coordination._derive_coordination``, ``_derive_two_phase_commits``) and the spans'
memory footprints (``assembly.footprint``). In each case the Python function is the
specification and runs whatever the native core hands back.

>>> name() in ("native", "python")
True
"""

from __future__ import annotations

import functools
import json
import logging
import os
from types import ModuleType
from typing import Final, Literal

from hopscope.processors.foreign import error_status
from hopscope.processors.records import LogRecord, SpanEvent, SpanLink, SpanRecord
from hopscope.processors.sanitize import Limits

__all__ = ["ENV", "log_choice", "name", "native", "native_limits", "select"]

logger = logging.getLogger(__name__)

ENV: Final = "HOPSCOPE_NATIVE"


# The decision, made once per process (or forced by select()).
_chosen: dict[str, ModuleType | None] = {}


def native() -> ModuleType | None:
    """The configured native core, or None (not built, or ``HOPSCOPE_NATIVE=0``)."""
    try:
        return _chosen["core"]
    except KeyError:
        pass
    module = None if os.environ.get(ENV, "1").strip() == "0" else _load()
    _chosen["core"] = module
    return module


def _load() -> ModuleType | None:
    try:
        import hopscope_native
    except ImportError:
        return None
    hopscope_native.configure(SpanRecord, SpanEvent, SpanLink, LogRecord, error_status, json.dumps)
    return hopscope_native


def select(core: Literal["native", "python"]) -> None:
    """Use ``core`` from now on in this process, whatever ``HOPSCOPE_NATIVE`` says (for
    benchmarks comparing the two in one run).

    Raises:
        RuntimeError: ``"native"`` while the extension is not installed.
    """
    if core == "python":
        _chosen["core"] = None
        return
    module = _load()
    if module is None:
        raise RuntimeError("the native core is not installed (make install builds it)")
    _chosen["core"] = module


def name() -> str:
    """``"native"`` or ``"python"``: the core decoding protobuf in this process."""
    return "native" if native() is not None else "python"


def log_choice() -> None:
    """Say once, at a processor's start, which core is in use and how to change it."""
    if native() is not None:
        logger.info("per-span core: native (hopscope_native); %s=0 selects the Python one", ENV)
    elif os.environ.get(ENV, "1").strip() == "0":
        logger.info("per-span core: python (%s=0)", ENV)
    else:
        logger.info("per-span core: python (hopscope_native is not installed: make install)")


# Limits past this are left to the reference (the native core counts in 64-bit integers).
_NATIVE_LIMIT_MAX: Final = 2**62


@functools.cache
def native_limits(limits: Limits) -> tuple[int, int, int, int, int, int, int, int, int] | None:
    """``limits`` as the native core takes them; None for limits it cannot count."""
    values = (
        limits.max_value_chars,
        limits.max_name_chars,
        limits.max_key_chars,
        limits.max_attributes,
        limits.max_attribute_chars,
        limits.max_events,
        limits.max_links,
        limits.max_depth,
        limits.max_future_ns,
    )
    return values if max(values) < _NATIVE_LIMIT_MAX else None
