"""The consumer seam: what the processor needs of a Kafka consumer, and two implementations.

- :class:`KafkaSource` wraps kafka-python's ``KafkaConsumer`` (manual commits, earliest reset);
- :class:`InMemoryConsumer` is a double for unit tests of the loop: partitions are lists,
  rebalances and commit failures are triggered by the test, nothing waits.

Partitions are ``(topic, partition)`` tuples and messages :class:`Message`, so the code around
the seam never imports kafka. Commits are plain offsets: the next offset to read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hopscope.processors.errors import ProcessorError

TopicPartition = tuple[str, int]
# Called with the partitions assigned or revoked; from inside ``poll`` (kafka-python calls its
# listener on the polling thread, where blocking calls like ``committed()`` are not allowed).
RebalanceCallback = Callable[[set[TopicPartition]], None]


class CommitError(ProcessorError):
    """An offset commit failed (broker restarting, coordinator moving, group rebalancing):
    nothing is lost, the same offsets stay committable."""


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record, as the pipeline reads it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: int | None = None  # Kafka timestamp, ms; None or -1 when unknown


class Consumer(Protocol):
    """A consumer-group member with manual commits."""

    def subscribe(
        self, topics: Sequence[str], on_assigned: RebalanceCallback, on_revoked: RebalanceCallback
    ) -> None: ...

    def poll(self, timeout_s: float) -> dict[TopicPartition, list[Message]]: ...

    def assignment(self) -> set[TopicPartition]: ...

    def pause_all(self) -> None: ...

    def resume_all(self) -> None: ...

    def committed(self, partition: TopicPartition) -> int | None: ...

    def seek(self, partition: TopicPartition, offset: int | None) -> None:
        """Read ``partition`` from ``offset`` next; None: from its beginning."""

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit synchronously; raise :class:`CommitError` when the broker did not take it."""

    def position(self, partition: TopicPartition) -> int: ...

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...

    def close(self) -> None: ...


def _message(record: Any) -> Message:
    """A kafka-python ``ConsumerRecord`` as a :class:`Message`."""
    timestamp = getattr(record, "timestamp", None)
    return Message(record.topic, record.partition, record.offset, record.value, record.key,
                   timestamp)  # fmt: skip


class KafkaSource:
    """:class:`Consumer` over kafka-python's ``KafkaConsumer``; ``options`` are passed through
    (security settings, timeouts). Auto-commit is off: only the processor commits."""

    def __init__(self, bootstrap: str, group: str, **options: Any) -> None:
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", **options,
        )  # fmt: skip

    def subscribe(
        self, topics: Sequence[str], on_assigned: RebalanceCallback, on_revoked: RebalanceCallback
    ) -> None:
        from kafka import ConsumerRebalanceListener

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                on_revoked({(tp.topic, tp.partition) for tp in revoked})

            def on_partitions_assigned(self, assigned: Any) -> None:
                on_assigned({(tp.topic, tp.partition) for tp in assigned})

        self._consumer.subscribe(list(topics), listener=Listener())

    def poll(self, timeout_s: float) -> dict[TopicPartition, list[Message]]:
        polled = self._consumer.poll(timeout_ms=round(timeout_s * 1000))
        return {
            (tp.topic, tp.partition): [_message(record) for record in records]
            for tp, records in polled.items()
        }

    def assignment(self) -> set[TopicPartition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause_all(self) -> None:
        self._consumer.pause(*self._consumer.assignment())

    def resume_all(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def committed(self, partition: TopicPartition) -> int | None:
        from kafka.structs import TopicPartition as KafkaPartition

        committed: int | None = self._consumer.committed(KafkaPartition(*partition))
        return committed

    def seek(self, partition: TopicPartition, offset: int | None) -> None:
        from kafka.structs import TopicPartition as KafkaPartition

        if offset is None:
            self._consumer.seek_to_beginning(KafkaPartition(*partition))
        else:
            self._consumer.seek(KafkaPartition(*partition), offset)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata
        from kafka.structs import TopicPartition as KafkaPartition

        try:
            self._consumer.commit(
                {
                    KafkaPartition(t, p): OffsetAndMetadata(o, "", -1)
                    for (t, p), o in offsets.items()
                }
            )
        except KafkaError as error:
            raise CommitError(f"{type(error).__name__}: {error}") from None

    def position(self, partition: TopicPartition) -> int:
        from kafka.structs import TopicPartition as KafkaPartition

        position: int = self._consumer.position(KafkaPartition(*partition))
        return position

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        from kafka.structs import TopicPartition as KafkaPartition

        ends = self._consumer.end_offsets([KafkaPartition(*p) for p in partitions])
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    def highwater(self, partition: TopicPartition) -> int | None:
        from kafka.structs import TopicPartition as KafkaPartition

        highwater: int | None = self._consumer.highwater(KafkaPartition(*partition))
        return highwater

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class InMemoryConsumer:
    """A :class:`Consumer` double: one member, partitions held as lists of messages.

    The test appends messages (:meth:`produce`), moves partitions (:meth:`rebalance`), makes
    commits fail (``fail_commits``) and reads what was committed (``commits``, the latest
    offset per partition). Like kafka-python, a partition handed back keeps its read position
    until the processor seeks; rebalance callbacks run inside :meth:`poll`. Not thread-safe.
    """

    def __init__(self, max_poll_records: int = 500) -> None:
        self.max_poll_records = max_poll_records
        self.log: dict[TopicPartition, list[Message]] = {}
        self.commits: dict[TopicPartition, int] = {}
        self.commit_calls = 0
        self.fail_commits = 0  # the next n commits raise CommitError
        self.paused: set[TopicPartition] = set()
        self.closed = False
        self._topics: tuple[str, ...] = ()
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._pending_rebalance: tuple[set[TopicPartition], set[TopicPartition]] | None = None
        self._on_assigned: RebalanceCallback | None = None
        self._on_revoked: RebalanceCallback | None = None

    # -- test controls --------------------------------------------------------------------
    def produce(
        self, topic: str, value: bytes | None, *, partition: int = 0, key: bytes | None = None,
        timestamp: int | None = None,
    ) -> Message:  # fmt: skip
        """Append a message; it is assigned to this member on the next poll if subscribed."""
        messages = self.log.setdefault((topic, partition), [])
        message = Message(topic, partition, len(messages), value, key, timestamp)
        messages.append(message)
        return message

    def rebalance(self, assigned: Iterable[TopicPartition]) -> None:
        """On the next poll, revoke every partition, then assign ``assigned``."""
        self._pending_rebalance = (set(self._assigned), set(assigned))

    # -- Consumer -------------------------------------------------------------------------
    def subscribe(
        self, topics: Sequence[str], on_assigned: RebalanceCallback, on_revoked: RebalanceCallback
    ) -> None:
        self._topics = tuple(topics)
        self._on_assigned, self._on_revoked = on_assigned, on_revoked
        self.rebalance(tp for tp in self.log if tp[0] in self._topics)

    def poll(self, timeout_s: float) -> dict[TopicPartition, list[Message]]:
        del timeout_s  # never waits
        if self._pending_rebalance is not None:
            revoked, assigned = self._pending_rebalance
            self._pending_rebalance = None
            if revoked and self._on_revoked:
                self._on_revoked(revoked)
            self._assigned = assigned
            for tp in assigned:
                # A new owner starts at the committed offset; an old one keeps its position.
                self._positions.setdefault(tp, self.commits.get(tp, 0))
            if self._on_assigned:
                self._on_assigned(set(assigned))
        polled: dict[TopicPartition, list[Message]] = {}
        budget = self.max_poll_records
        for tp in sorted(self._assigned - self.paused):
            start = self._positions[tp]
            messages = self.log.get(tp, [])[start : start + budget]
            if messages:
                polled[tp] = messages
                self._positions[tp] = start + len(messages)
                budget -= len(messages)
            if budget <= 0:
                break
        return polled

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def pause_all(self) -> None:
        self.paused |= self._assigned

    def resume_all(self) -> None:
        self.paused.clear()

    def committed(self, partition: TopicPartition) -> int | None:
        return self.commits.get(partition)

    def seek(self, partition: TopicPartition, offset: int | None) -> None:
        self._positions[partition] = offset or 0

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.commit_calls += 1
        if self.fail_commits:
            self.fail_commits -= 1
            raise CommitError("commit refused (test)")
        self.commits.update(offsets)

    def position(self, partition: TopicPartition) -> int:
        return self._positions[partition]

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log.get(tp, [])) for tp in partitions}

    def highwater(self, partition: TopicPartition) -> int | None:
        return len(self.log.get(partition, []))

    def close(self) -> None:
        self.closed = True
