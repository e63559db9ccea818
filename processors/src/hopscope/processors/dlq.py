"""The dead-letter topic: what cannot be processed, with the reason, never silently lost.

Each dead letter carries the original bytes and the headers ``hopscope.error``,
``hopscope.source.topic``, ``hopscope.source.partition`` and ``hopscope.source.offset``
(DESIGN.md §3). A document Elasticsearch rejected is dead-lettered as its JSON body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hopscope.core.kafka_security import explained_connect_errors
from hopscope.processors.errors import SinkUnavailableError

# What of a dead letter too large for the dead-letter topic is kept (see DeadLetters.send).
TRUNCATED_BYTES = 512 * 1024


class DeadLetters:
    """An idempotent producer to the DLQ topic; :meth:`send` waits for the acknowledgement.

    ``producer_options`` are extra kafka-python settings, the security ones
    (:mod:`hopscope.core.kafka_security`) among them. A producer that cannot bootstrap raises
    :class:`hopscope.core.kafka_security.KafkaConnectError` saying why.
    """

    def __init__(
        self, bootstrap: str, topic: str, producer_options: Mapping[str, Any] | None = None
    ) -> None:
        self.topic = topic
        self.count = 0
        self._bootstrap = bootstrap
        self._options = dict(producer_options or {})
        with explained_connect_errors(bootstrap, self._options, "the dead-letter producer"):
            self._producer = self._new_producer()

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True,
            compression_type="gzip", max_request_size=16 * 1024 * 1024, **self._options,
        )  # fmt: skip

    def send(
        self,
        value: bytes,
        reason: str,
        *,
        key: bytes | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        from kafka.errors import KafkaError, MessageSizeTooLargeError

        headers = [("hopscope.error", reason.encode()[:8192])]
        if topic is not None:
            headers += [
                ("hopscope.source.topic", topic.encode()),
                ("hopscope.source.partition", str(partition).encode()),
                ("hopscope.source.offset", str(offset).encode()),
            ]
        try:
            try:
                self._producer.send(self.topic, value=value, key=key,
                                    headers=headers).get(timeout=30)  # fmt: skip
            except MessageSizeTooLargeError:
                # Larger than the dead-letter topic takes (max.message.bytes, 1 MiB by
                # default): a retry cannot help and would stall the processor. The head goes
                # instead, the full size in a header; the source headers locate the whole.
                # kafka-python's idempotent producer refuses every later send once the broker
                # refused one, so a new producer sends it.
                self._producer.close(timeout=10)
                self._producer = self._new_producer()
                headers.append(("hopscope.truncated", str(len(value)).encode()))
                self._producer.send(self.topic, value=value[:TRUNCATED_BYTES], key=key,
                                    headers=headers).get(timeout=30)  # fmt: skip
        except KafkaError as error:
            # Not acknowledged: the source offset must not be committed; retry like ES.
            raise SinkUnavailableError(
                f"dead-letter topic {self.topic} unavailable: {error}"
            ) from None
        self.count += 1

    def close(self) -> None:
        self._producer.close(timeout=10)
