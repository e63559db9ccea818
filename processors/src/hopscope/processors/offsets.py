"""Which offsets may be committed: up to the lowest message not yet fully acknowledged.

Every message is *held* while any record that came from it (its spans and logs, and the derived
records of the traces it fed) is not acknowledged by Elasticsearch. A partition's commit offset
is its lowest held offset, or one past the highest offset seen when nothing is held.

A trace split over several messages of one partition adds a rule: the commit offset must never
fall between its messages, or a restart would re-read only the later part and overwrite the
trace's derived records with partial ones. So when such a trace is written, its earlier
messages stay held (*deferred*) until everything up to its last message is releasable.
"""

from __future__ import annotations

from collections import Counter


class OffsetTracker:
    """Hold counts per (topic, partition, offset)."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], Counter[int]] = {}
        self._seen: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        # (topic, partition) -> [(earlier offset, last offset of the same trace)]
        self._deferred: dict[tuple[str, int], list[tuple[int, int]]] = {}

    def seen(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        self._seen[key] = max(self._seen.get(key, -1), offset)

    def hold(self, topic: str, partition: int, offset: int, count: int = 1) -> None:
        self.seen(topic, partition, offset)
        self._held.setdefault((topic, partition), Counter())[offset] += count

    def release(self, topic: str, partition: int, offset: int, count: int = 1) -> None:
        held = self._held.get((topic, partition))
        if held is None or held[offset] < count:
            raise ValueError(f"release without hold: {topic}[{partition}]@{offset}")
        held[offset] -= count
        if held[offset] == 0:
            del held[offset]

    def release_trace(self, sources: set[tuple[str, int, int]]) -> None:
        """Release the holds of a written trace, deferring its earlier messages per partition
        until the commit offset can pass its last one."""
        last: dict[tuple[str, int], int] = {}
        for topic, partition, offset in sources:
            key = (topic, partition)
            last[key] = max(last.get(key, -1), offset)
        for topic, partition, offset in sources:
            self.release(topic, partition, offset)
            final = last[(topic, partition)]
            if offset < final:
                self._deferred.setdefault((topic, partition), []).append((offset, final))

    def _target(self, key: tuple[str, int]) -> int:
        held = self._held.get(key)
        target = min(held) if held else self._seen[key] + 1
        deferred = self._deferred.get(key)
        if deferred:
            # A deferred earlier message blocks the commit while its trace's last message is
            # at or past the target; once the target has passed the last one, it is free.
            changed = True
            while changed:
                changed = False
                for earlier, final in deferred:
                    if earlier < target <= final:
                        target = earlier
                        changed = True
            self._deferred[key] = [(e, f) for e, f in deferred if f >= target]
        return target

    def committable(self) -> dict[tuple[str, int], int]:
        """Partitions whose commit offset moved since the last call, with that offset."""
        moved = {}
        for key in self._seen:
            target = self._target(key)
            if target > self._committed.get(key, -1):
                moved[key] = target
        return moved

    def committed(self, offsets: dict[tuple[str, int], int]) -> None:
        self._committed.update(offsets)

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Drop the state of revoked partitions."""
        for key in partitions:
            self._held.pop(key, None)
            self._seen.pop(key, None)
            self._committed.pop(key, None)
            self._deferred.pop(key, None)

    def held_count(self) -> int:
        return sum(sum(c.values()) for c in self._held.values())
