"""The dead-letter topic: what cannot be processed, with the reason, never silently lost.

Each dead letter carries the original bytes and the headers ``hopscope.error``,
``hopscope.source.topic``, ``hopscope.source.partition`` and ``hopscope.source.offset``
(docs/DESIGN.md §3). A document Elasticsearch rejected is dead-lettered as its JSON body.

Dead letters are batched: :meth:`DeadLetterSink.add` only queues, :meth:`DeadLetterSink.flush`
sends the queue and waits for every acknowledgement. The checkpoint flushes before it commits
(:mod:`hopscope.processors.checkpoint`), so a source offset never moves past a dead letter the
broker has not taken; a letter not acknowledged stays queued for the next flush.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from hopscope.core.kafka_security import explained_connect_errors
from hopscope.core.kafka_topics import COMPRESSION
from hopscope.processors.errors import SinkUnavailableError
from hopscope.processors.pipeline import DeadLetter

# What of a dead letter too large for the dead-letter topic is kept (see DeadLetters.flush).
TRUNCATED_BYTES = 512 * 1024
# How long one flush waits for each acknowledgement before calling the topic unavailable.
ACK_TIMEOUT_S = 30


class DeadLetterSink(Protocol):
    """Where dead letters go: queued by ``add``, durable once ``flush`` returns."""

    def add(self, letter: DeadLetter) -> None: ...

    def flush(self) -> int:
        """Send what is queued; return how many were acknowledged. Raise
        :class:`SinkUnavailableError` when some were not (they stay queued)."""

    def close(self) -> None: ...


def _headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    headers = [("hopscope.error", letter.reason.encode()[:8192])]
    if letter.source is not None:
        topic, partition, offset = letter.source
        headers += [
            ("hopscope.source.topic", topic.encode()),
            ("hopscope.source.partition", str(partition).encode()),
            ("hopscope.source.offset", str(offset).encode()),
        ]
    return headers


class DeadLetters:
    """An idempotent producer to the DLQ topic, batched: :meth:`flush` waits for the
    acknowledgements.

    ``producer_options`` are extra kafka-python settings, the security ones
    (:mod:`hopscope.core.kafka_security`) among them. A producer that cannot bootstrap raises
    :class:`hopscope.core.kafka_security.KafkaConnectError` saying why.
    """

    def __init__(
        self, bootstrap: str, topic: str, producer_options: Mapping[str, Any] | None = None
    ) -> None:
        self.topic = topic
        self.count = 0
        self._queue: list[DeadLetter] = []
        # Letters the topic refused as too large: sent cut to TRUNCATED_BYTES.
        self._too_large: set[int] = set()
        self._bootstrap = bootstrap
        self._options = dict(producer_options or {})
        with explained_connect_errors(bootstrap, self._options, "the dead-letter producer"):
            self._producer = self._new_producer()

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True,
            compression_type=COMPRESSION, max_request_size=16 * 1024 * 1024, **self._options,
        )  # fmt: skip

    @property
    def pending(self) -> int:
        return len(self._queue)

    def add(self, letter: DeadLetter) -> None:
        self._queue.append(letter)

    def _send(self, letter: DeadLetter) -> Any:
        headers, value = _headers(letter), letter.value
        # A letter refused only because it shared a request with a large one (the producer
        # aborts every pending batch after one refusal) is sent again whole: cutting it would
        # change nothing but the header.
        if id(letter) in self._too_large and len(value) > TRUNCATED_BYTES:
            headers.append(("hopscope.truncated", str(len(value)).encode()))
            value = value[:TRUNCATED_BYTES]
        return self._producer.send(self.topic, value=value, key=letter.key, headers=headers)

    def flush(self) -> int:
        from kafka.errors import KafkaError, MessageSizeTooLargeError

        acknowledged = 0
        while self._queue:
            failed: list[DeadLetter] = []
            error: KafkaError | None = None
            refused_size = False
            # Send all, then wait for all: one round trip per batch, not per letter.
            sent: list[tuple[DeadLetter, Any]] = []
            for letter in self._queue:
                try:
                    sent.append((letter, self._send(letter)))
                except KafkaError as send_error:  # client-side checks, metadata timeouts
                    sent.append((letter, send_error))
            for letter, future in sent:
                try:
                    if isinstance(future, KafkaError):
                        raise future
                    future.get(timeout=ACK_TIMEOUT_S)
                    acknowledged += 1
                except MessageSizeTooLargeError as too_large:
                    failed.append(letter)
                    if id(letter) in self._too_large:
                        error = too_large  # even its head is too large: retry like an outage
                    else:
                        # Larger than the topic takes (max.message.bytes, 1 MiB by default):
                        # a retry cannot help and would stall the processor. The head goes
                        # instead, the full size in a header; the source headers locate it.
                        self._too_large.add(id(letter))
                        refused_size = True
                except KafkaError as send_error:
                    failed.append(letter)
                    error = send_error
            self._queue = failed
            self.count += len(sent) - len(failed)
            if refused_size:
                # kafka-python's idempotent producer refuses every later send once the broker
                # refused one, so a new producer sends the rest.
                self._producer.close(timeout=10)
                self._producer = self._new_producer()
                continue
            if error is not None:
                # Not acknowledged: the source offsets must not be committed; retry like ES.
                raise SinkUnavailableError(
                    f"dead-letter topic {self.topic} unavailable: {error}"
                ) from None
        self._too_large.clear()
        return acknowledged

    def close(self) -> None:
        self._producer.close(timeout=10)


class InMemoryDeadLetters:
    """A :class:`DeadLetterSink` double: ``letters`` holds what was flushed, ``queued`` what
    was not yet; while ``unavailable`` is true a flush raises :class:`SinkUnavailableError`."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.queued: list[DeadLetter] = []
        self.unavailable = False
        self.flushes = 0
        self.closed = False

    @property
    def pending(self) -> int:
        return len(self.queued)

    def add(self, letter: DeadLetter) -> None:
        self.queued.append(letter)

    def flush(self) -> int:
        self.flushes += 1
        if self.queued and self.unavailable:
            raise SinkUnavailableError("in-memory dead-letter topic unavailable (test outage)")
        flushed, self.queued = self.queued, []
        self.letters += flushed
        return len(flushed)

    def close(self) -> None:
        self.closed = True
