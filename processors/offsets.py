"""Which offsets may be committed: up to the lowest message not yet fully acknowledged.

Every message is *held* while any record that came from it (its spans and logs, and the derived
records of the traces it fed) is not acknowledged by Elasticsearch. A partition's commit offset
is its lowest held offset, or one past the highest offset seen when nothing is held.
"""

from __future__ import annotations

from collections import Counter


class OffsetTracker:
    """Hold counts per (topic, partition, offset)."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], Counter[int]] = {}
        self._seen: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}

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

    def committable(self) -> dict[tuple[str, int], int]:
        """Partitions whose commit offset moved since the last call, with that offset."""
        moved = {}
        for key, highest in self._seen.items():
            held = self._held.get(key)
            target = min(held) if held else highest + 1
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

    def held_count(self) -> int:
        return sum(sum(c.values()) for c in self._held.values())
