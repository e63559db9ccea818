"""The real broker: idempotent acks=all production and a consumer group with committed offsets."""

from collections.abc import Callable

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from tests.conftest import Services

pytestmark = pytest.mark.integration

MESSAGES = 1000
PARTITIONS = 3


def test_thousand_messages_through_a_consumer_group(
    services: Services, unique_name: Callable[[str], str]
) -> None:
    topic, group = unique_name("otlp"), unique_name("group")
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        admin.close()

    producer = KafkaProducer(
        bootstrap_servers=services.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type="gzip",
        linger_ms=5,
    )
    futures = [
        producer.send(topic, key=f"trace-{i % 50:04d}".encode(), value=f"span-{i}".encode())
        for i in range(MESSAGES)
    ]
    producer.flush(timeout=60)
    metadata = [f.get(timeout=30) for f in futures]
    producer.close()
    assert len(metadata) == MESSAGES
    # One key always lands on one partition: what keeps a trace together.
    partition_of: dict[int, set[int]] = {}
    for i, meta in enumerate(metadata):
        partition_of.setdefault(i % 50, set()).add(meta.partition)
    assert all(len(parts) == 1 for parts in partition_of.values())

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=services.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    received: list[bytes] = []
    try:
        for _ in range(120):
            for records in consumer.poll(timeout_ms=500).values():
                received.extend(r.value for r in records)
            if len(received) >= MESSAGES:
                break
        consumer.commit()
    finally:
        consumer.close()
    assert sorted(received) == sorted(f"span-{i}".encode() for i in range(MESSAGES))

    # The group's committed offsets are the end of every partition: nothing left to read.
    checker = KafkaConsumer(bootstrap_servers=services.kafka_bootstrap, group_id=group)
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = checker.end_offsets(partitions)
        committed = {tp: checker.committed(tp) for tp in partitions}
    finally:
        checker.close()
    assert committed == ends
    assert sum(ends.values()) == MESSAGES
