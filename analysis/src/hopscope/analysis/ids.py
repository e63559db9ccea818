"""Ids as integers for the per-trace jobs: a dictionary of the window's trace ids, and keys
of the ids' hashes for joins and group-bys.

Trace ids are 32-character text (any text, from some sources), span ids 16. A job that
joins, groups or deduplicates per trace over millions of rows hashes and compares that text
again and again. Two ways out, both exact:

- :class:`TraceCodes` gives every distinct trace id of the window a ``UInt32`` code once, the
  job works on the codes, and the few ids it reports (example traces) are decoded at the end.
  Codes follow the ids' lexical order, so sorting by code sorts as the text would: tie-breaks
  "by trace id" (:func:`hopscope.analysis.expr.example_traces`) pick the same traces.
- One 64-bit key of the ids' hashes (:func:`id_key`): a join on it pairs rows whose ids are
  then compared, so a hash collision pairs nothing (:func:`id_pairs`, :func:`join_on_ids`);
  a group-by or count on it is used only where no two of the window's ids share a hash
  (:func:`group_key`, which checks). Nothing to build first, so a job that joins once pays
  one hash per row instead of a dictionary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import polars as pl

TRACE_ID: Final = "trace_id"
CODE: Final = pl.UInt32()


def _run_starts(ids: pl.Series) -> pl.Series:
    """True where a row's id differs from the previous row's (the first row always): the
    spans of a trace usually sit together, so the runs are about as many as the traces."""
    this = pl.col(ids.name)
    first = pl.int_range(pl.len()) == 0
    return ids.to_frame().select(first | this.ne_missing(this.shift())).to_series()


class _Runs:
    """The runs of equal ids in a column: each row's run number and each run's id."""

    def __init__(self, ids: pl.Series) -> None:
        starts = _run_starts(ids)
        self.run = starts.cast(pl.UInt32).cum_sum() - 1
        self.heads = ids.filter(starts)


@dataclass(frozen=True)
class TraceCodes:
    """The window's distinct trace ids and their codes (row ``i`` of :attr:`table` has code
    ``i``), in lexical order.

    Examples:
        >>> codes = TraceCodes.of(pl.Series(["b", "b", "a", None]), pl.Series(["c"]))
        >>> spans = pl.DataFrame({"trace_id": ["b", "b", "a", "b"], "x": [1, 2, 3, 4]})
        >>> codes.encode(spans).rows()
        [(1, 1), (1, 2), (0, 3), (1, 4)]
        >>> codes.decode([2, 0])
        ['c', 'a']
        >>> same, (encoded,) = TraceCodes.encoded(spans)
        >>> encoded.get_column("trace_id").to_list(), same.decode([0, 1])
        ([1, 1, 0, 1], ['a', 'b'])
    """

    table: pl.DataFrame  # trace_id (String, sorted, distinct), code (UInt32 = row index)

    @classmethod
    def of(cls, *ids: pl.Series) -> TraceCodes:
        """Codes for every distinct non-null id in ``ids`` (a span frame's ``trace_id``, the
        traces', ...). Repeats next to each other are dropped before hashing."""
        return cls._of([s.filter(_run_starts(s)) for s in ids])

    @classmethod
    def _of(cls, heads: Sequence[pl.Series]) -> TraceCodes:
        distinct = pl.concat([s.drop_nulls().rename(TRACE_ID) for s in heads])
        distinct = distinct.cast(pl.String).unique().sort()
        return cls(distinct.to_frame().with_row_index("code").select(TRACE_ID, "code"))

    @classmethod
    def encoded(
        cls, *frames: pl.DataFrame, column: str = TRACE_ID
    ) -> tuple[TraceCodes, list[pl.DataFrame]]:
        """The codes of every id in ``frames`` and the frames encoded with them
        (:meth:`encode`), each frame's runs found once for both."""
        runs = [_Runs(frame.get_column(column)) for frame in frames]
        codes = cls._of([r.heads for r in runs])
        return codes, [
            codes._encode(frame, column, r) for frame, r in zip(frames, runs, strict=True)
        ]

    def encode(self, frame: pl.DataFrame, column: str = TRACE_ID) -> pl.DataFrame:
        """``frame`` with ``column`` replaced by the ids' codes (null for a null id or one
        not in the table), in place and order.

        Only the first row of each run of equal ids is looked up; the other rows take their
        run's code by position.
        """
        return self._encode(frame, column, _Runs(frame.get_column(column)))

    def _encode(self, frame: pl.DataFrame, column: str, runs: _Runs) -> pl.DataFrame:
        heads = runs.heads.rename(TRACE_ID).to_frame()
        looked_up = heads.join(self.table, on=TRACE_ID, how="left", maintain_order="left")
        codes = looked_up.get_column("code").gather(runs.run).rename(column)
        return frame.with_columns(codes)

    def decode(self, codes: Sequence[int]) -> list[str]:
        """The trace ids of ``codes``, in their order."""
        ids: list[str] = self.table.get_column(TRACE_ID).gather(list(codes)).to_list()
        return ids


# Row numbers of the two sides of a join on ids (:func:`id_pairs`).
LEFT_ROW: Final = "_left_row"
RIGHT_ROW: Final = "_right_row"
_KEY: Final = "_id_key"


def id_key(*columns: str) -> pl.Expr:
    """One 64-bit key of the id columns ``columns``: their hashes combined, as the Parquet
    loader's deduplication combines them. Equal ids give equal keys; different ids may share
    one (a collision, about one pair in 2⁶⁴), so whatever joins or groups on the key compares
    the ids afterwards (:func:`id_pairs`).

    Examples:
        >>> frame = pl.DataFrame({"t": ["a", "a", "b"], "s": ["1", "1", "1"]})
        >>> keys = frame.select(id_key("t", "s")).to_series()
        >>> keys[0] == keys[1], keys[0] == keys[2], keys.dtype
        (True, False, UInt64)
    """
    key = _hash(columns[0])
    for seed, column in enumerate(columns[1:], start=1):
        key = key ^ _hash(column, seed)
    return key


def _hash(column: str, seed: int = 0) -> pl.Expr:
    """The 64-bit hash of an id column, the one place keys are made of (tests replace it
    with one that collides)."""
    return pl.col(column).hash(seed=seed)


def id_pairs(
    left: pl.DataFrame, right: pl.DataFrame, left_on: Sequence[str], right_on: Sequence[str]
) -> pl.DataFrame:
    """The rows of ``left`` and ``right`` whose ids are equal: what a join on the text ids
    pairs, found by joining on one 64-bit key (:func:`id_key`) and comparing the ids of each
    pair afterwards, so a collision pairs nothing.

    A join on several text columns hashes and compares every row's text; on the integer key
    the text is compared only for the pairs the key proposes (at 10M spans the delays with
    their statements, 1.06-1.38 CPU-s on the text ids against 0.65-0.81 on the key).

    Parameters:
        left, right: the two frames.
        left_on, right_on: their id columns, paired in order. A null id pairs with nothing,
            as in a join (``nulls_equal=False``).

    Returns:
        ``_left_row, _right_row`` (UInt32 row numbers of ``left`` and ``right``), one row per
        pair, by left row then right row.

    Examples:
        >>> left = pl.DataFrame({"t": ["a", "a", "b", None], "s": ["1", "2", "1", "1"]})
        >>> right = pl.DataFrame({"t": ["b", "a", "a", "c"], "p": ["1", "1", "1", None]})
        >>> id_pairs(left, right, ["t", "s"], ["t", "p"]).rows()
        [(0, 1), (0, 2), (2, 0)]
    """
    if len(left_on) != len(right_on) or not left_on:
        raise ValueError(
            f"left_on and right_on must name as many columns, at least one: {left_on}, {right_on}"
        )
    theirs = [f"_right_{i}" for i in range(len(right_on))]

    def keyed(
        frame: pl.DataFrame, row: str, on: Sequence[str], names: Sequence[str]
    ) -> pl.DataFrame:
        # Null ids pair with nothing; left in, their keys (the hash of null) would all meet.
        return (
            frame.select(*(pl.col(c).alias(n) for c, n in zip(on, names, strict=True)))
            .with_row_index(row)
            .filter(pl.all_horizontal(pl.col(n).is_not_null() for n in names))
            .with_columns(id_key(*names).alias(_KEY))
        )

    mine = [f"_left_{i}" for i in range(len(left_on))]
    return (
        keyed(left, LEFT_ROW, left_on, mine)
        .join(keyed(right, RIGHT_ROW, right_on, theirs), on=_KEY, how="inner")
        .filter(
            pl.all_horizontal(pl.col(a) == pl.col(b) for a, b in zip(mine, theirs, strict=True))
        )
        .select(LEFT_ROW, RIGHT_ROW)
        .sort(LEFT_ROW, RIGHT_ROW)
    )


def join_on_ids(
    left: pl.DataFrame,
    right: pl.DataFrame,
    *,
    on: Sequence[str],
    how: Literal["inner", "left"] = "left",
) -> pl.DataFrame:
    """``left.join(right, on=on, how=how, maintain_order="left_right")`` for text id columns
    ``on``, the ids hashed once and compared only where their keys meet (:func:`id_pairs`).

    Examples:
        >>> left = pl.DataFrame({"t": ["a", "b", "a"], "s": ["1", "1", "2"], "x": [1, 2, 3]})
        >>> right = pl.DataFrame({"t": ["a", "a"], "s": ["2", "2"], "y": ["p", "q"]})
        >>> join_on_ids(left, right, on=["t", "s"]).rows()
        [('a', '1', 1, None), ('b', '1', 2, None), ('a', '2', 3, 'p'), ('a', '2', 3, 'q')]
        >>> join_on_ids(left, right, on=["t", "s"], how="inner").get_column("y").to_list()
        ['p', 'q']
    """
    pairs = id_pairs(left, right, on, on)
    return (
        left.with_row_index(LEFT_ROW)
        .join(pairs, on=LEFT_ROW, how=how, maintain_order="left_right")
        .join(
            right.drop(on).with_row_index(RIGHT_ROW),
            on=RIGHT_ROW,
            how="left",
            maintain_order="left",
        )
        .drop(LEFT_ROW, RIGHT_ROW)
    )


def group_key(frame: pl.LazyFrame, column: str = TRACE_ID) -> pl.Expr:
    """``column`` as something to group or count distinct ids by (``group_by``,
    ``n_unique``): its 64-bit hashes when no two different ids of ``frame`` share one
    (checked here, on the distinct ids alone), else the ids themselves. Exact either way: the
    groups are the ids' groups. On the hashes, counting the distinct traces per group of
    millions of rows costs about half as much (at 10M spans, the hops' edges: 1.0-1.2 CPU-s
    on the text, 0.6 on the hashes).

    Examples:
        >>> frame = pl.LazyFrame({"g": [1, 1, 2], "trace_id": ["a", "a", None]})
        >>> frame.group_by("g").agg(group_key(frame).n_unique()).sort("g").collect().rows()
        [(1, 1), (2, 1)]
    """
    ids = frame.select(column).collect().get_column(column)
    # Runs of equal ids dropped first (a shift comparison), then the distinct ids (null one
    # of them: n_unique counts it, and its hash too).
    distinct = ids.filter(_run_starts(ids)).unique().to_frame()
    if distinct.select(_hash(column).is_duplicated().any()).item():
        return pl.col(column)
    return _hash(column)
