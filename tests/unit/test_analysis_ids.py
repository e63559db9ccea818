"""Integer ids (hopscope.analysis.ids): trace codes, and the tail job on codes giving what it
gave on the text ids, on simulated scenarios; joins on a key of the ids' hashes giving what a
join on the text ids gives, hash collisions included."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal
from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from hopscope.analysis import ids
from hopscope.analysis.ids import TraceCodes, group_key, id_pairs, join_on_ids
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


# Few distinct ids, so that rows meet often, repeat on both sides and are sometimes null.
_ID = st.sampled_from(["a", "b", "ab", "ba", "0f", ""]) | st.none()


@st.composite
def _frames(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame]:
    def frame(prefix: str) -> pl.DataFrame:
        rows = draw(st.lists(st.tuples(_ID, _ID), max_size=12))
        return pl.DataFrame(
            {
                "t": [t for t, _ in rows],
                "s": [s for _, s in rows],
                prefix: list(range(len(rows))),
                "both": [f"{prefix}{i}" for i in range(len(rows))],
            },
            schema={"t": pl.String, "s": pl.String, prefix: pl.Int64, "both": pl.String},
        )

    return frame("x"), frame("y")


def _weak_key(*columns: str) -> pl.Expr:
    # A key that collides all the time: different ids of one length share it.
    return pl.sum_horizontal(pl.col(c).str.len_bytes() for c in columns).cast(pl.UInt64)


@pytest.mark.parametrize("key", [ids.id_key, _weak_key], ids=["hash", "colliding"])
@pytest.mark.parametrize("how", ["left", "inner"])
@settings(max_examples=150, deadline=None)
@given(frames=_frames())
def test_join_on_ids_is_the_join_on_the_text_ids(
    frames: tuple[pl.DataFrame, pl.DataFrame],
    how: Literal["left", "inner"],
    key: object,
) -> None:
    left, right = frames
    expected = left.join(right, on=["t", "s"], how=how, maintain_order="left_right")
    with mock.patch.object(ids, "id_key", key):
        got = join_on_ids(left, right, on=["t", "s"], how=how)
        pairs = id_pairs(left, right, ["t", "s"], ["t", "s"])
    assert_frame_equal(got, expected)
    assert pairs.height == left.join(right, on=["t", "s"], how="inner").height


def test_id_pairs_pairs_differently_named_columns_and_checks_them() -> None:
    servers = pl.DataFrame({"trace_id": ["t1", "t1", "t2"], "span_id": ["a", "b", "a"]})
    children = pl.DataFrame(
        {"trace_id": ["t2", "t1", "t1", "t3"], "parent_id": ["a", "a", "a", "a"]}
    )
    pairs = id_pairs(servers, children, ["trace_id", "span_id"], ["trace_id", "parent_id"])
    assert pairs.rows() == [(0, 1), (0, 2), (2, 0)]
    with pytest.raises(ValueError, match="as many columns"):
        id_pairs(servers, children, ["trace_id"], ["trace_id", "parent_id"])


def _weak_hash(column: str, seed: int = 0) -> pl.Expr:
    # A hash that collides all the time: different ids of one length share it.
    return pl.col(column).str.len_bytes().cast(pl.UInt64) + seed


@pytest.mark.parametrize("weak", [False, True], ids=["hash", "colliding"])
@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 2), _ID), max_size=20))
def test_group_key_counts_what_the_text_ids_count(
    rows: list[tuple[int, str | None]], weak: bool
) -> None:
    frame = pl.LazyFrame(
        {"g": [g for g, _ in rows], "trace_id": [t for _, t in rows]},
        schema={"g": pl.Int64, "trace_id": pl.String},
    )
    expected = frame.group_by("g").agg(pl.col("trace_id").n_unique().alias("n")).sort("g")
    with mock.patch.object(ids, "_hash", _weak_hash) if weak else mock.MagicMock():
        key = group_key(frame)
    got = frame.group_by("g").agg(key.n_unique().alias("n")).sort("g")
    assert_frame_equal(got.collect(), expected.collect())


def test_group_key_falls_back_to_the_text_on_a_collision() -> None:
    frame = pl.LazyFrame({"trace_id": ["ab", "cd", "ab"]})
    assert str(group_key(frame)) == str(pl.col("trace_id").hash())
    with mock.patch.object(ids, "_hash", _weak_hash):
        assert str(group_key(frame)) == str(pl.col("trace_id"))
        assert str(group_key(pl.LazyFrame({"trace_id": ["ab", "c"]}))) == str(
            pl.col("trace_id").str.len_bytes().cast(pl.UInt64) + 0
        )


def _few_hashes(column: str, seed: int = 0) -> pl.Expr:
    # 32 hash values in all: every join on the key meets many rows with other ids.
    return pl.col(column).hash(seed=seed) % 32


@pytest.mark.parametrize("scenario", ["lock-contention", "lb-skew", "cache-degradation"])
def test_jobs_on_colliding_keys_give_what_they_give_on_the_real_ones(scenario: str) -> None:
    # The jobs that join or count on keys of the ids' hashes, on simulated scenarios: the
    # same tables and findings when nearly every key is shared by several ids.
    from hopscope.analysis.jobs import balance, cache, coordination, database, hops

    data = simulated(scenario).dataset
    for job in (balance, cache, coordination, database, hops):
        real = job.run(data)
        with mock.patch.object(ids, "_hash", _few_hashes):
            colliding = job.run(data)
        assert real.tables.keys() == colliding.tables.keys()
        for name, table in real.tables.items():
            assert_frame_equal(colliding.tables[name], table, check_row_order=False)
        assert colliding.findings == real.findings
