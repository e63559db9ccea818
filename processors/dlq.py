"""The dead-letter topic: what cannot be processed, with the reason, never silently lost.

Each dead letter carries the original bytes and the headers ``hopscope.error``,
``hopscope.source.topic``, ``hopscope.source.partition`` and ``hopscope.source.offset``
(DESIGN.md §3). A document Elasticsearch rejected is dead-lettered as its JSON body.
"""

from __future__ import annotations

from typing import Any

from hopscope.processors.errors import SinkUnavailableError


class DeadLetters:
    """An idempotent producer to the DLQ topic; :meth:`send` waits for the acknowledgement."""

    def __init__(self, bootstrap: str, topic: str, producer_options: dict[str, Any] | None = None):
        from kafka import KafkaProducer

        self.topic = topic
        self.count = 0
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
            compression_type="gzip", max_request_size=16 * 1024 * 1024,
            **(producer_options or {}),
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
        from kafka.errors import KafkaError

        headers = [("hopscope.error", reason.encode()[:8192])]
        if topic is not None:
            headers += [
                ("hopscope.source.topic", topic.encode()),
                ("hopscope.source.partition", str(partition).encode()),
                ("hopscope.source.offset", str(offset).encode()),
            ]
        try:
            self._producer.send(self.topic, value=value, key=key, headers=headers).get(timeout=30)
        except KafkaError as error:
            # Not acknowledged: the source offset must not be committed; retry like ES.
            raise SinkUnavailableError(
                f"dead-letter topic {self.topic} unavailable: {error}"
            ) from None
        self.count += 1

    def close(self) -> None:
        self._producer.close(timeout=10)
