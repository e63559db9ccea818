"""The first contact with Kafka of a command: fail fast when nothing answers, and create the
topics the command uses when they are missing.

kafka-python retries a failing bootstrap for 30 s by default with a backoff that grows to
30 s between attempts, so an unreachable broker was reported after half a minute, the cause
buried in the client's own log lines. :func:`ensure_topics` makes one admin client with a
short bootstrap timeout, raising :class:`~hopscope.core.kafka_security.KafkaConnectError`
(one line: address, cause, what to check) within :data:`REACH_TIMEOUT_S`; the clients the
command makes afterwards keep their defaults, which suit an outage after the start.

Creating the topics up front, rather than leaving it to the broker's auto-creation on first
use, means no consumer subscribes to a topic that does not exist yet (the client logs that as
an error, and the group is assigned nothing until the next metadata refresh), and a broker
that disables auto-creation still works.

A cluster keeps listing a broker that died without a controlled shutdown until its controller
fences it (``broker.session.timeout.ms``), and the admin client sends each request to a broker
picked from that list: a request can go to the dead one and fail with a connection error while
the others answer. Such retriable errors are retried, within the same ``timeout_s``, and the
client then picks another broker (the dead one is in reconnect backoff).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Final, TypeVar

from hopscope.core.kafka_security import explained_connect_errors

__all__ = ["COMPRESSION", "REACH_TIMEOUT_S", "ensure_topics"]

logger = logging.getLogger(__name__)

# Long enough for a broker that is still binding its port, short enough that a wrong address
# is reported while the user is still looking at the terminal.
REACH_TIMEOUT_S: Final = 4.0
# Between bootstrap attempts: kafka-python's default grows to 30 s, past the whole timeout.
_RECONNECT_BACKOFF_MAX_MS: Final = 1000

# The codec of every producer hopscope makes (the SDK's exporters, the simulator through them,
# the processors' dead letters): LZ4 compresses an OTLP batch at a fraction of gzip's CPU, on
# the payment service's own cores, for a somewhat larger batch on the wire. Compression is a
# small part of the export thread's work (encoding and redaction lead): 30.9 vs 31.6 µs of CPU
# per exported span, lz4 vs gzip (benchmarks/sdk_overhead.py, docs/SCALING.md). Consumers read
# every codec the broker holds, gzip included: kafka-python decompresses per batch by its
# header (lz4 through the ``lz4`` package, a dependency here).
COMPRESSION: Final = "lz4"

# Between tries of a request that a broker refused (it died): shorter than the reconnect
# backoff that keeps the client off that broker for the next try.
_RETRY_PAUSE_S: Final = 0.05

_T = TypeVar("_T")


def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    options: Mapping[str, Any] | None = None,
    *,
    what: str,
    timeout_s: float = REACH_TIMEOUT_S,
) -> list[str]:
    """Check that Kafka answers and create the missing ``topics`` with the broker's default
    partition count and replication factor.

    Parameters:
        bootstrap: ``host:port[,host:port]`` of the brokers.
        topics: the topics the caller is about to use.
        options: kafka-python security settings
            (:meth:`~hopscope.core.kafka_security.KafkaSecurity.client_options`).
        what: who connects, for the message (``"the simulator"``).
        timeout_s: how long to try to reach the brokers.

    Returns:
        The topics this call created.

    Raises:
        KafkaConnectError: no broker answered within ``timeout_s``, or the TLS/SASL settings
            do not fit the listener; the message says which and what to check.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    options = dict(options or {})
    timeout_ms = round(timeout_s * 1000)
    with explained_connect_errors(bootstrap, options, what):
        # The caller's own client settings win over these bounds (a test or an operator
        # may give a bootstrap timeout of its own).
        settings: dict[str, Any] = {
            "bootstrap_timeout_ms": timeout_ms,
            "reconnect_backoff_max_ms": _RECONNECT_BACKOFF_MAX_MS,
            "request_timeout_ms": max(timeout_ms, 10_000),
            **options,
        }
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, **settings)
    created: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        existing = set(_retried(admin.list_topics, deadline))
        for topic in dict.fromkeys(topics):  # in order, once each
            if topic in existing:
                continue
            try:
                # A retry of a creation whose answer was lost finds the topic: already exists.
                _retried(partial(admin.create_topics, {topic: {}}, wait_for_metadata=True),
                         deadline)  # fmt: skip
                created.append(topic)
            except TopicAlreadyExistsError:
                pass  # another client created it meanwhile: what we wanted
            except KafkaError as error:
                # A user without the right to create topics (a secured cluster whose topics
                # an operator made): the broker's own rules then apply on first use.
                logger.info("topic %s not created (%s); left to the broker", topic, error)
    finally:
        admin.close()
    if created:
        logger.info("created Kafka topics %s", ", ".join(created))
    return created


def _retried(call: Callable[[], _T], deadline: float) -> _T:
    """``call()``, tried again on a retriable Kafka error (a connection refused by a broker
    that died and is still listed) until ``deadline`` (``time.monotonic()``); at least twice."""
    from kafka.errors import KafkaError

    tries = 0
    while True:
        tries += 1
        try:
            return call()
        except KafkaError as error:
            if not error.retriable or (tries >= 2 and time.monotonic() >= deadline):
                raise
            logger.info("Kafka request failed (%s: %s); trying again", type(error).__name__, error)
            time.sleep(_RETRY_PAUSE_S)
