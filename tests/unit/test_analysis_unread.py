"""The columns a report does not load (``hopscope.analysis.jobs.UNREAD``) are read by no job."""

from __future__ import annotations

from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

import hopscope.analysis
from hopscope.analysis.jobs import JOB_NAMES, UNREAD, job
from hopscope.analysis.report import build_report
from hopscope.analysis.schema import SCHEMAS
from tests.analysis_support import simulated

_PACKAGE = Path(hopscope.analysis.__file__).parent
# Where a job's columns are named: the jobs, the report around them and the shared expressions.
_READERS = sorted([*(_PACKAGE / "jobs").glob("*.py"), _PACKAGE / "report.py", _PACKAGE / "expr.py"])


@pytest.mark.parametrize("kind", sorted(UNREAD))
def test_unread_columns_exist_and_no_job_names_them(kind: str) -> None:
    for column in UNREAD[kind]:
        assert column in SCHEMAS[kind], f"{kind}.{column} is not a column"
        for path in _READERS:
            if path.name == "__init__.py":
                continue
            assert f'"{column}"' not in path.read_text(), f"{path.name} reads {kind}.{column}"


def test_the_report_is_the_same_without_them() -> None:
    data = simulated("node-failure").dataset
    report = build_report(data, source="simulated", progress=False)
    for name in JOB_NAMES:  # each job on every column, as a report ran it before
        alone = job(name)(data)
        assert report.results[name].findings == alone.findings, name
        for table, frame in alone.tables.items():
            assert_frame_equal(report.results[name].tables[table], frame)
