"""How the Elasticsearch sink reads bulk answers: orjson for the parsing, every item sorted
unless the answer says none failed."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest
from elastic_transport import SerializationError

from hopscope.processors.documents import Document, deletion
from hopscope.processors.sink import ElasticsearchSink, answer_serializers

INDEX = "hopscope-hops-2026.05.04"


class _Answering:
    """A client double whose bulk answer is given: what the sink makes of it is the test."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer

    def options(self, **_options: Any) -> _Answering:
        return self

    def bulk(self, operations: Iterable[bytes], **_params: Any) -> dict[str, Any]:
        list(operations)
        return self.answer


def _documents() -> list[Document]:
    return [Document("hops", INDEX, "t-1", {"a": 1}), deletion("hops", INDEX, "t-2")]


def test_an_answer_without_failures_acknowledges_every_document() -> None:
    # What Elasticsearch answers when a deleted document was already gone: 404, no failure.
    answer = {"errors": False, "items": [{"index": {"status": 201}}, {"delete": {"status": 404}}]}
    outcome = ElasticsearchSink(_Answering(answer)).write(_documents())
    assert outcome.acknowledged == 2 and not outcome.rejected


def test_an_answer_with_failures_is_sorted_item_by_item() -> None:
    rejected = {"status": 400, "error": {"type": "document_parsing_exception"}}
    answer = {"errors": True, "items": [{"index": rejected}, {"delete": {"status": 404}}]}
    outcome = ElasticsearchSink(_Answering(answer)).write(_documents())
    assert outcome.acknowledged == 1
    assert [(doc.id, json.loads(reason)["type"]) for doc, reason in outcome.rejected] == [
        ("t-1", "document_parsing_exception")
    ]


def test_an_answer_short_of_items_is_an_error_not_an_acknowledgement() -> None:
    answer = {"errors": False, "items": [{"index": {"status": 201}}]}
    with pytest.raises(ValueError):
        ElasticsearchSink(_Answering(answer)).write(_documents())


def test_answers_parse_as_the_standard_library_parses_them() -> None:
    (serializer,) = answer_serializers().values()
    body = json.dumps({"errors": True, "items": [
        {"index": {"status": 400, "error": {"reason": "bad \u00e9 \"value\" \\ \n", "n": 1.5}}},
        {"delete": {"status": 404}},
    ]}).encode()  # fmt: skip
    assert serializer.loads(body) == json.loads(body)
    assert serializer.loads(b"") is None  # an empty answer, as the client's own serializer
    with pytest.raises(SerializationError):
        serializer.loads(b"{not json")
