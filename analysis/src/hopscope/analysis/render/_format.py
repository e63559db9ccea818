"""The format policy: how every figure of a job reads, on the terminal, the page and in JSON.

One rule per kind of figure, so a p99 or a share reads the same wherever a person meets it:

- **durations** (columns and evidence keys with an ``ns`` word: ``p99_ns``,
  ``exclusive_ns_mean``) in milliseconds: whole milliseconds from 10 ms, two decimals below
  (``40 ms``, ``1.25 ms``). Tables put the unit in the header (``p99 (ms)``) and the number in
  the cell, by the same rule.
- **names** as words: headers and evidence labels drop the ``ns`` word and read underscores as
  spaces (``client_p99_ns`` is headed ``client p99 (ms)``), so a narrow terminal can wrap them.
- **factors** (a ``ratio`` of a figure to its peers' or its own baseline: ``p50_ratio``,
  ``self_ratio``, ``network_p50_ratio``) as multiples: ``1.25×``, ``108×``.
- **shares** (names with a word ``share``, ``shares``, ``rate``, ``ratio`` or ``fraction``
  that is not a factor: ``error_rate``, ``share_of_slow``, ``hit_ratio_after``) as
  percentages: one decimal below 10 %, whole percent from there (``4.2%``, ``42%``).
- **nested figures** (a mapping, or a list of them, in evidence) by their own keys when those
  name a duration or a share (``total_ns`` inside ``resources``), else by the outer key.
- **other floats**: four significant digits; **integers** with thousands separators;
  **times** in UTC to the millisecond; missing values as ``–``.
- **JSON** carries the raw values (integer nanoseconds, shares as fractions) for machines;
  times as ISO 8601, anything else polars returns as its ``str``.

Finding titles and gains are sentences the jobs write with :func:`ms` too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import polars as pl

MISSING: Final = "–"
_SHARE: Final = re.compile(r"(?:^|_)(?:shares?|rate|ratio|fraction)(?=_|$)")
# A ratio of a figure (a percentile, the own time) to a reference is a factor, not a fraction.
_FACTOR: Final = re.compile(r"(?:^|_)(?:p\d+|self|mean)_ratio(?=_|$)")
# "ns" as a word of a snake_case name: a suffix (p99_ns) or in the middle (exclusive_ns_mean).
_NS_WORD: Final = re.compile(r"(?:^|_)ns(?=_|$)")


def is_ns(name: str) -> bool:
    """Whether a column or evidence key holds nanoseconds (shown in milliseconds).

    >>> is_ns("p99_ns"), is_ns("exclusive_ns_mean"), is_ns("dns_lookups"), is_ns("transactions")
    (True, True, False, False)
    """
    return _NS_WORD.search(name) is not None


def label(name: str) -> str:
    """A column or evidence key as words, without its ``ns`` unit word (the value says ms).

    >>> label("client_p99_ns"), label("exclusive_ns_mean"), label("share_of_slow")
    ('client p99', 'exclusive mean', 'share of slow')
    """
    return _NS_WORD.sub("", name).replace("_", " ").strip() or name


def is_factor(name: str) -> bool:
    """Whether ``name`` is a factor (a figure over its reference), read as a multiple.

    >>> is_factor("p50_ratio"), is_factor("network_p50_ratio"), is_factor("hit_ratio")
    (True, True, False)
    """
    return bool(_FACTOR.search(name))


def factor(value: float) -> str:
    """A multiple: ``1.25×``, ``108×``.

    >>> factor(1.25), factor(108.05)
    ('1.25×', '108×')
    """
    return f"{number(value)}×" if abs(value) < 100 else f"{value:.0f}×"


def is_share(name: str) -> bool:
    """Whether a column or evidence key holds a fraction of a whole (shown as a percentage).

    >>> is_share("critical_share"), is_share("error_rate"), is_share("shares"), is_share("cv")
    (True, True, True, False)
    >>> is_share("share_of_kind"), is_share("hit_ratio_after"), is_share("operation")
    (True, True, False)
    """
    return _SHARE.search(name) is not None and not is_factor(name)


def ms_number(ns: float) -> str:
    """Nanoseconds as a number of milliseconds (no unit): whole from 10 ms, else 2 decimals.

    >>> ms_number(40_000_000), ms_number(1_250_000), ms_number(12_345_600_000)
    ('40', '1.25', '12346')
    """
    value = ns / 1e6
    if not math.isfinite(value):
        return str(value)
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.2f}"


def ms(ns: float | None) -> str:
    """Nanoseconds as a person reads them.

    >>> ms(40_000_000), ms(1_250_000), ms(950_000), ms(None)
    ('40 ms', '1.25 ms', '0.95 ms', '–')
    """
    if ns is None:
        return MISSING
    return f"{ms_number(ns)} ms"


def percent(value: float) -> str:
    """A fraction as a percentage: one decimal below 10 %, whole percent from there.

    >>> percent(0.042), percent(0.4249), percent(1.0)
    ('4.2%', '42%', '100%')
    """
    if not math.isfinite(value):
        return str(value)
    return f"{value * 100:.1f}%" if abs(value) < 0.1 else f"{value * 100:.0f}%"


def number(value: float) -> str:
    """A float: four significant digits in the usual range, scientific outside it.

    >>> number(1.23456), number(2345.6), number(0.0000123)
    ('1.235', '2,346', '1.23e-05')
    """
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:.3g}"


def integer(value: int) -> str:
    """An integer with thousands separators: ``integer(12345) == '12,345'``."""
    return f"{value:,}"


def timestamp(value: datetime | date) -> str:
    """A time in UTC to the millisecond (a date as ISO 8601).

    >>> timestamp(datetime(2026, 3, 2, 10, 0, 1, 250_000, tzinfo=UTC))
    '2026-03-02 10:00:01.250'
    """
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return value.isoformat()


def span(delta: timedelta) -> str:
    """A length of time in the unit that reads best (``250 ms``, ``42 s``, ``3.5 min``)."""
    seconds = delta.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def describe(key: str, item: Any) -> str:
    """One figure named ``key`` (an evidence entry, a table cell) by the policy above.

    >>> describe("wait_p99_ns", 12_500_000), describe("critical_share", 0.4)
    ('12 ms', '40%')
    >>> describe("nodes", ["a", "b"]), describe("shares", {"p50": 0.5, "p99": 0.05})
    ('a, b', 'p50: 50%, p99: 5.0%')
    >>> describe("calls", 1234), describe("x", None), describe("ok", True)
    ('1,234', '–', 'true')
    >>> describe("resources", [{"resource": "account:9", "total_ns": 32_602_666_892}])
    'resource: account:9, total: 32603 ms'
    """
    if isinstance(item, bool) or item is None:
        return MISSING if item is None else str(item).lower()
    if isinstance(item, int | float) and is_ns(key):
        return ms(item)
    if isinstance(item, float) and is_factor(key):
        return factor(item)
    if isinstance(item, float) and is_share(key):
        return percent(item)
    if isinstance(item, float):
        return number(item)
    if isinstance(item, int):
        return integer(item)
    if isinstance(item, list | tuple):
        # Records (mappings) apart by semicolons: their fields are joined by commas.
        sep = "; " if any(isinstance(v, Mapping) for v in item) else ", "
        return sep.join(describe(key, v) for v in item)
    if isinstance(item, datetime | date):
        return timestamp(item)
    if isinstance(item, Mapping):  # {"p50": 0.83} under "shares"; {"total_ns": ...} as itself
        return ", ".join(
            f"{label(str(k))}: {describe(str(k) if _names_unit(str(k)) else key, v)}"
            for k, v in item.items()
        )
    return str(item)


def _names_unit(name: str) -> bool:
    return is_ns(name) or is_factor(name) or is_share(name)


def header(column: str, dtype: pl.DataType) -> str:
    """A table column's heading: words, and durations say their unit.

    >>> header("client_p99_ns", pl.Int64()), header("error_rate", pl.Float64())
    ('client p99 (ms)', 'error rate')
    """
    return f"{label(column)} (ms)" if is_ns(column) and dtype.is_numeric() else label(column)


def cell_formatter(column: str, dtype: pl.DataType) -> Callable[[Any], str]:
    """How every cell of one table column reads (the unit of ``*_ns`` is in its header).

    >>> cell_formatter("p99_ns", pl.Int64())(41_200_000), cell_formatter("share", pl.Float64())(0.5)
    ('41', '50%')
    """

    def null_safe(fmt: Callable[[Any], str]) -> Callable[[Any], str]:
        return lambda item: MISSING if item is None else fmt(item)

    if is_ns(column) and dtype.is_numeric():
        return null_safe(lambda v: ms_number(float(v)))
    if dtype.is_float() and is_factor(column):
        return null_safe(factor)
    if dtype.is_float() and is_share(column):
        return null_safe(percent)
    if dtype.is_float():
        return null_safe(number)
    if dtype.is_integer():
        return null_safe(lambda v: integer(int(v)))
    if isinstance(dtype, pl.Datetime | pl.Date):
        return null_safe(timestamp)
    if isinstance(dtype, pl.List | pl.Struct | pl.Array):
        return null_safe(lambda v: json.dumps(v, default=str, ensure_ascii=False))
    return null_safe(str)


def to_json(document: Mapping[str, Any]) -> str:
    """A job's or report's document as indented JSON, one trailing newline."""
    return json.dumps(document, indent=2, default=_json_default) + "\n"


def _json_default(item: Any) -> Any:
    if isinstance(item, datetime):
        return item.isoformat()
    return str(item)
