"""Integer trace codes (hopscope.analysis.ids): the codes themselves, and the tail job on codes
giving what it gave on the text ids, on simulated scenarios."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hopscope.analysis.ids import TraceCodes
from hopscope.analysis.jobs import tail
from hopscope.analysis.schema import Dataset
from tests.analysis_support import simulated


class _TextIds:
    """The tail job's view of the ids before codes: the text ids, unchanged."""

    @classmethod
    def encoded(
        cls, *frames: pl.DataFrame, column: str = "trace_id"
    ) -> tuple[_TextIds, list[pl.DataFrame]]:
        return cls(), list(frames)

    def decode(self, codes: Sequence[str]) -> list[str]:
        return list(codes)


def test_codes_follow_the_text_order_and_runs_need_not_be_contiguous() -> None:
    ids = pl.Series("trace_id", ["b2", "b2", "a1", None, "b2", "zz", "a1"])
    codes = TraceCodes.of(ids, pl.Series(["c3"]))
    assert codes.table.get_column("trace_id").to_list() == ["a1", "b2", "c3", "zz"]
    encoded = codes.encode(pl.DataFrame({"trace_id": ids, "row": range(7)}))
    assert encoded.get_column("trace_id").to_list() == [1, 1, 0, None, 1, 3, 0]
    assert encoded.get_column("row").to_list() == list(range(7))
    unknown = codes.encode(pl.DataFrame({"trace_id": ["nope", "a1"]}))
    assert unknown.get_column("trace_id").to_list() == [None, 0]
    assert codes.decode([3, 0]) == ["zz", "a1"]


def test_encoded_gives_every_frame_the_same_codes() -> None:
    spans = pl.DataFrame({"trace_id": ["x", "x", "y"]})
    traces = pl.DataFrame({"trace_id": ["y", "w"]})
    codes, (s, t) = TraceCodes.encoded(spans, traces)
    assert codes.decode(s.get_column("trace_id").to_list()) == ["x", "x", "y"]
    assert codes.decode(t.get_column("trace_id").to_list()) == ["y", "w"]


def _shuffled(data: Dataset) -> Dataset:
    # Spans out of trace order: a trace's spans in several runs, as deduplicated archives give.
    spans = data.spans.collect().sample(fraction=1.0, shuffle=True, seed=3).lazy()
    return Dataset(spans, data.traces, data.hops, data.failovers, data.coordination,
                   data.two_phase_commits, data.logs)  # fmt: skip


@pytest.mark.parametrize("scenario", ["node-failure", "cache-degradation", "lb-skew"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_tail_on_codes_equals_tail_on_text_ids(
    scenario: str, shuffle: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = simulated(scenario).dataset
    if shuffle:
        data = _shuffled(data)
    on_codes = tail.run(data)
    monkeypatch.setattr(tail, "TraceCodes", _TextIds)
    on_text = tail.run(data)
    assert on_codes.tables.keys() == on_text.tables.keys()
    for name, table in on_codes.tables.items():
        assert_frame_equal(table, on_text.tables[name])
    assert on_codes.findings == on_text.findings
    if scenario == "node-failure":  # findings, so their example traces are compared too
        assert on_codes.findings
