"""Analysis jobs: each module's ``run(data, ...)`` reads a Dataset and returns a JobResult.

:data:`JOBS` names them as ``hopscope analyze <job>`` does, in the order a report runs them;
:func:`job` imports one on first use (a job's imports stay off the path of the others).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Final

from hopscope.analysis.findings import JobResult
from hopscope.analysis.schema import Dataset

# job name -> module under hopscope.analysis.jobs
JOBS: Final = {
    "bottlenecks": "bottlenecks",
    "hops": "hops",
    "failovers": "failovers",
    "coordination": "coordination",
    "tail": "tail",
    "balance": "balance",
    "db": "database",
    "cache": "cache",
}


def job(name: str) -> Callable[[Dataset], JobResult]:
    """The ``run`` function of job ``name`` (a key of :data:`JOBS`).

    >>> job("hops").__module__
    'hopscope.analysis.jobs.hops'
    """
    if name not in JOBS:
        raise ValueError(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")
    module = importlib.import_module(f"hopscope.analysis.jobs.{JOBS[name]}")
    run: Callable[[Dataset], JobResult] = module.run
    return run
