"""Links into Kibana: a Discover view of one trace's spans and logs.

Discover keeps its state in the URL fragment as rison (a compact JSON notation): ``_g`` holds
the time range, ``_a`` the data view, query, columns and sort. The link opens the
``<prefix>-trace-events`` data view (spans and logs together) from ``deploy/kibana/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from hopscope.core.settings import DEFAULT_INDEX_PREFIX
from hopscope.dashboards.kibana.saved_objects import (
    TRACE_EVENTS,
    data_view_id,
)

DEFAULT_TIME_RANGE: Final = ("now-7d", "now")
TRACE_COLUMNS: Final = ("service.name", "service.node.name", "span.name", "event.duration",
                        "event.outcome", "log.level", "message")  # fmt: skip
_TRACE_ID: Final = re.compile(r"^[0-9a-f]{32}$")
# Rison leaves these unquoted in ids; anything else makes a value a quoted string.
_RISON_ID: Final = re.compile(r"^[^-0-9 '!:(),*@$][^ '!:(),*@$]*$")


def rison(value: Any) -> str:
    """Encode ``value`` as rison (what Kibana's URL state uses).

    >>> print(rison({"query": {"language": "kuery", "query": "it's"}, "n": [1, True]}))
    (n:!(1,!t),query:(language:kuery,query:'it!'s'))
    """
    if value is None:
        return "!n"
    if value is True:
        return "!t"
    if value is False:
        return "!f"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if value and _RISON_ID.match(value):
            return value
        return "'" + value.replace("!", "!!").replace("'", "!'") + "'"
    if isinstance(value, Mapping):
        return "(" + ",".join(f"{rison(str(k))}:{rison(v)}" for k, v in sorted(value.items())) + ")"
    if isinstance(value, Sequence):
        return "!(" + ",".join(rison(item) for item in value) + ")"
    raise TypeError(f"cannot encode {type(value).__name__} as rison")


def _time(value: str | datetime) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("time_range datetimes must be timezone-aware")
        return value.isoformat().replace("+00:00", "Z")
    return value


def discover_url(
    kibana_url: str,
    trace_id: str,
    *,
    index_prefix: str = DEFAULT_INDEX_PREFIX,
    space: str | None = None,
    time_range: tuple[str | datetime, str | datetime] | None = None,
) -> str:
    """A Discover link to the spans and logs of ``trace_id``, oldest first.

    Parameters:
        kibana_url: Kibana's base URL, e.g. ``http://127.0.0.1:5601``.
        trace_id: 32 lowercase hex digits (an uppercase id is lowered).
        index_prefix: the processors' index prefix; it names the data view.
        space: a Kibana space id; None for the default space.
        time_range: (from, to) as Kibana date math (``now-7d``), ISO strings or aware
            datetimes; default the last 7 days.

    >>> discover_url("http://kb:5601/", "0af7651916cd43dd8448eb211c80319c")[:60]
    'http://kb:5601/app/discover#/?_g=(time:(from:now-7d,to:now))'
    """
    trace_id = trace_id.strip().lower()
    if not _TRACE_ID.match(trace_id):
        raise ValueError(f"trace_id must be 32 hex digits, got {trace_id!r}")
    if not kibana_url.startswith(("http://", "https://")):
        raise ValueError(f"kibana_url must start with http:// or https://, got {kibana_url!r}")
    start, end = time_range or DEFAULT_TIME_RANGE
    base = kibana_url.rstrip("/")
    if space and space != "default":
        base += f"/s/{quote(space, safe='')}"
    global_state = {"time": {"from": _time(start), "to": _time(end)}}
    app_state = {
        "columns": list(TRACE_COLUMNS),
        "dataSource": {"dataViewId": data_view_id(index_prefix, TRACE_EVENTS), "type": "dataView"},
        "query": {"language": "kuery", "query": f'trace.id : "{trace_id}"'},
        "sort": [["@timestamp", "asc"]],
    }
    # Kibana's own links keep rison's punctuation readable and escape the rest.
    safe = "!'(),:*@$-_.~/"
    return (
        f"{base}/app/discover#/?_g={quote(rison(global_state), safe=safe)}"
        f"&_a={quote(rison(app_state), safe=safe)}"
    )


def trace_link(
    kibana_url: str, *, index_prefix: str = DEFAULT_INDEX_PREFIX
) -> Callable[[str], str | None]:
    """A function giving each trace id its Discover link (None for an id that is not a W3C
    trace id, e.g. from a Jaeger export): what the analysis report's ``trace_link`` takes.

    >>> link = trace_link("http://kb:5601")
    >>> link("not-a-trace-id") is None, link("0af7651916cd43dd8448eb211c80319c")[:25]
    (True, 'http://kb:5601/app/discov')
    """
    discover_url(kibana_url, "0" * 32, index_prefix=index_prefix)  # a bad URL fails here, once

    def link(trace_id: str) -> str | None:
        try:
            return discover_url(kibana_url, trace_id, index_prefix=index_prefix)
        except ValueError:
            return None

    return link
