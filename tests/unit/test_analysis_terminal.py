"""Job tables on a terminal: they fit its width, cut nothing to ``…``, and say their units."""

from __future__ import annotations

import io

import polars as pl
import pytest
from rich.console import Console

from hopscope.analysis.findings import JobResult
from hopscope.analysis.jobs import JOB_NAMES, compare, job
from hopscope.analysis.render import header, is_ns, print_job
from hopscope.analysis.render._terminal import DEFAULT_COLUMNS, FittedTable
from tests.analysis_support import SCENARIOS, simulated

WIDTH = 80


def _printed(result: JobResult, *, wide: bool = False) -> str:
    console = _console(WIDTH)
    print_job(result, console, wide=wide)
    return console.export_text()


def _console(width: int) -> Console:
    """A console of ``width`` columns that records what it prints (and writes it nowhere)."""
    return Console(file=io.StringIO(), width=width, record=True, color_system=None)


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("job_name", JOB_NAMES)
def test_tables_fit_80_columns_whole_and_in_ms(job_name: str, scenario: str) -> None:
    result = job(job_name)(simulated(scenario).dataset)
    text = _printed(result)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= WIDTH
    for frame in result.tables.values():
        for column, dtype in frame.schema.items():
            if is_ns(column):
                assert header(column, dtype).endswith("(ms)"), column
                assert "ns" not in header(column, dtype).split(), column


@pytest.mark.parametrize("job_name", JOB_NAMES)
def test_wide_shows_every_column_uncut(job_name: str) -> None:
    result = job(job_name)(simulated("lock-contention").dataset)
    text = _printed(result, wide=True)
    assert "…" not in text and "more column" not in text
    words = set(" ".join(text.split()).split())
    for frame in result.tables.values():
        if frame.height:
            for column, dtype in frame.schema.items():
                assert set(header(column, dtype).split()) <= words, column


def test_duration_headers_name_ms_and_cells_hold_ms() -> None:
    frame = pl.DataFrame({"exclusive_ns_mean": [12_345_678.0], "p99_ns": [41_200_000]})
    console = _console(WIDTH)
    console.print(FittedTable("t", frame))
    text = console.export_text()
    assert "exclusive mean (ms)" in " ".join(text.split())
    assert "p99 (ms)" in text and "12" in text and "41" in text and "12345678" not in text


def test_a_narrow_terminal_drops_columns_from_the_end_and_says_so() -> None:
    frame = pl.DataFrame({f"column_{i}": ["a-rather-long-value"] for i in range(6)})
    console = _console(50)
    console.print(FittedTable("t", frame))
    text = console.export_text()
    assert "column 0" in text and "column 1" in text and "column 5" not in text
    assert "more columns with --wide" in text and "…" not in text


def test_default_columns_name_columns_the_jobs_return() -> None:
    # Every job table has a chosen default, and no default names a column that is gone.
    seen: dict[str, dict[str, set[str]]] = {}
    for scenario in SCENARIOS:
        for name in JOB_NAMES:
            for table, frame in job(name)(simulated(scenario).dataset).tables.items():
                seen.setdefault(name, {}).setdefault(table, set()).update(frame.columns)
        # The window comparison, against another baseline run.
        reference = simulated("baseline", seed=8).dataset
        for table, frame in compare.run(simulated(scenario).dataset, reference).tables.items():
            seen.setdefault(compare.JOB, {}).setdefault(table, set()).update(frame.columns)
    assert set(DEFAULT_COLUMNS) == set(seen)
    for name, tables in seen.items():
        assert set(DEFAULT_COLUMNS[name]) == set(tables), name
        for table, columns in tables.items():
            assert set(DEFAULT_COLUMNS[name][table]) <= columns, (name, table)
