"""Trace ids as integers for the per-trace jobs: a dictionary of the window's trace ids.

Trace ids are 32-character text (any text, from some sources). A job that joins, groups or
deduplicates per trace over millions of rows hashes and compares that text again and again;
:class:`TraceCodes` gives every distinct id of the window a ``UInt32`` code once, the job
works on the codes, and the few ids it reports (example traces) are decoded at the end.

Codes follow the ids' lexical order, so sorting by code sorts as the text would: tie-breaks
"by trace id" (:func:`hopscope.analysis.expr.example_traces`) pick the same traces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

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
