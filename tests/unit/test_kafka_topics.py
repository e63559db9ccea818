"""``ensure_topics``' retry of a request that a dead but still listed broker refused."""

from __future__ import annotations

import time

import pytest
from kafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from hopscope.core import kafka_topics


def test_a_refused_connection_is_tried_again() -> None:
    answers: list[Exception | list[str]] = [KafkaConnectionError("111 ECONNREFUSED"), ["t"]]

    def call() -> list[str]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    # A deadline already past still allows the second try: the first may have hit the dead one.
    assert kafka_topics._retried(call, time.monotonic()) == ["t"]
    assert answers == []


def test_retries_end_at_the_deadline() -> None:
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1
        raise KafkaConnectionError("111 ECONNREFUSED")

    with pytest.raises(KafkaConnectionError):
        kafka_topics._retried(call, time.monotonic() + 0.2)
    assert 2 <= calls < 20


def test_an_error_a_retry_cannot_fix_is_raised_at_once() -> None:
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1
        raise TopicAuthorizationFailedError()

    with pytest.raises(TopicAuthorizationFailedError):
        kafka_topics._retried(call, time.monotonic() + 10)
    assert calls == 1
