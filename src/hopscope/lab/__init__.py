"""The reference payment system ("the lab"): real services instrumented only with the
standard OpenTelemetry instrumentations, a real Collector, Postgres primary and replica, Redis,
and faults injected by real tools, each with its ground truth.

The services live in ``deploy/reference/payments/`` (their dependencies: the ``lab`` extra);
this package starts, drives and stops them (``hopscope lab up|run|down``).
"""

from hopscope.lab._lab import (
    LabOptions,
    RunResult,
    down,
    drive,
    process,
    report,
    run,
    top_findings,
    up,
)
from hopscope.lab.errors import LabError, LabNotRunningError, MissingToolError
from hopscope.lab.faults import FAULTS, Fault, make_fault

__all__ = [
    "FAULTS",
    "Fault",
    "LabError",
    "LabNotRunningError",
    "LabOptions",
    "MissingToolError",
    "RunResult",
    "down",
    "drive",
    "make_fault",
    "process",
    "report",
    "run",
    "top_findings",
    "up",
]
