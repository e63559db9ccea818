"""The Elasticsearch loaders' ``trace_ids`` argument: refused before anything connects.

Selecting by trace ids against the real node: tests/integration/test_demo.py (the demo reads
exactly its own run among other traffic).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hopscope.analysis.loaders import count_elasticsearch, load_elasticsearch
from hopscope.analysis.loaders.elasticsearch import MAX_TRACE_IDS

CLOSED = "http://127.0.0.1:9"  # never reached: the arguments are checked first


@pytest.mark.parametrize("load", [load_elasticsearch, count_elasticsearch])
def test_one_string_is_not_a_collection_of_trace_ids(load: Callable[..., object]) -> None:
    with pytest.raises(ValueError, match="not one string"):
        load(CLOSED, trace_ids="4bf92f3577b34da6a3ce929d0e0e4736")


@pytest.mark.parametrize("load", [load_elasticsearch, count_elasticsearch])
def test_more_trace_ids_than_one_terms_query_holds_are_refused(load: Callable[..., object]) -> None:
    too_many = [f"{n:032x}" for n in range(MAX_TRACE_IDS + 1)]
    with pytest.raises(ValueError, match="terms query"):
        load(CLOSED, trace_ids=too_many)
