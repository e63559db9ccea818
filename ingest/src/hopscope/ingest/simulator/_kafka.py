"""Run a simulation into Kafka through the SDK's export pipeline, losing nothing.

The simulator emits far faster than Kafka acknowledges, and a full export queue drops the
oldest records (right for a payment service, wrong for ground truth). So the run flushes the
pipeline whenever the traces since the last flush could fill a quarter of the queue, and fails
with :class:`ExportIncompleteError` when Kafka did not get everything that was emitted.

With ``foreign_pans`` the other SDKs' messages go to the same topics through a plain producer
(no redaction: they stand for what a Collector writes), sent at the same flush points and
checked the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hopscope.core.kafka_security import kafka_client_options
from hopscope.core.kafka_topics import ensure_topics
from hopscope.ingest import conventions as c
from hopscope.ingest.kafka_exporter import KafkaWriter
from hopscope.ingest.pipeline import ExportSettings, KafkaPipeline
from hopscope.ingest.simulator._config import SimulationConfig
from hopscope.ingest.simulator._foreign import LOGS, SPANS, ForeignMessage
from hopscope.ingest.simulator._simulate import SimulationResult, simulate
from hopscope.ingest.simulator.exceptions import ExportIncompleteError

# A trace has 20-30 spans and about 5 log records: 40 records bounds it.
RECORDS_PER_TRACE_BOUND = 40


@dataclass(frozen=True)
class KafkaRun:
    """A simulation delivered to Kafka: what was emitted and the pipeline's counters."""

    result: SimulationResult
    stats: dict[str, Any]


def simulate_to_kafka(
    config: SimulationConfig,
    *,
    bootstrap: str,
    spans_topic: str = c.TOPIC_SPANS,
    logs_topic: str = c.TOPIC_LOGS,
    progress: Callable[[int], None] | None = None,
    flush_timeout_s: float = 60.0,
    producer_options: Mapping[str, Any] | None = None,
) -> KafkaRun:
    """Simulate ``config`` into the topics; every emitted record is acknowledged by Kafka.

    ``progress`` is called with the number of traces done so far. With ``config.foreign_pans``
    the stats gain ``foreign``: the other SDKs' messages acknowledged per signal.
    ``producer_options`` (kafka-python settings) go on top of the ``HOPSCOPE_KAFKA_*``
    security variables (:mod:`hopscope.core.kafka_security`). The topics are created when
    missing; a broker that does not answer within a few seconds raises
    :class:`~hopscope.core.kafka_security.KafkaConnectError` before anything is simulated.
    """
    options = kafka_client_options(producer_options)
    # Before anything is simulated: an unreachable broker is reported within seconds, in one
    # line, and the topics exist before the first record is sent to them.
    ensure_topics(bootstrap, (spans_topic, logs_topic), options, what="the simulator")
    settings = ExportSettings(kafka_bootstrap=bootstrap, spans_topic=spans_topic,
                              logs_topic=logs_topic, producer_options=options)  # fmt: skip
    pipeline = KafkaPipeline(settings)
    max_queue = min(limits.max_queue_size for limits in pipeline.limits.values())
    flush_every = max(1, max_queue // (4 * RECORDS_PER_TRACE_BOUND))
    topics = {SPANS: spans_topic, LOGS: logs_topic}
    foreign_writer = KafkaWriter(bootstrap, send_timeout_s=flush_timeout_s,
                                 producer_options=options)  # fmt: skip
    foreign_pending: list[ForeignMessage] = []
    foreign_sent = {SPANS: 0, LOGS: 0}

    def send_foreign() -> None:
        for signal, topic in topics.items():
            batch = [(m.key, m.value) for m in foreign_pending if m.signal == signal]
            if batch and not foreign_writer.send(topic, batch):
                raise ExportIncompleteError(
                    f"Kafka at {bootstrap} did not take {len(batch)} messages of other SDKs' "
                    f"{signal} for {topic} within {flush_timeout_s:.0f} s; is the broker "
                    "reachable?"
                )
            foreign_sent[signal] += len(batch)
        foreign_pending.clear()

    def advance(done: int) -> None:
        if done % flush_every == 0:
            if not pipeline.force_flush(flush_timeout_s):
                raise ExportIncompleteError(
                    f"Kafka at {bootstrap} did not take the telemetry of {flush_every} traces "
                    f"within {flush_timeout_s:.0f} s; is the broker reachable?"
                )
            send_foreign()
        if progress is not None:
            progress(done)

    try:
        result = simulate(
            config,
            span_processors=[pipeline.span_processor],
            log_processors=[pipeline.log_processor],
            progress=advance,
            foreign_sink=foreign_pending.append if config.foreign_pans else None,
        )
        send_foreign()
    finally:
        pipeline.shutdown(timeout_s=flush_timeout_s)
        foreign_writer.close(timeout_s=flush_timeout_s)
    stats = pipeline.stats()
    exported = {kind: stats[kind]["exported"] for kind in ("spans", "logs")}
    if exported != {"spans": result.spans, "logs": result.log_records}:
        raise ExportIncompleteError(
            f"emitted {result.spans} spans and {result.log_records} log records, but Kafka "
            f"acknowledged {exported['spans']} and {exported['logs']} "
            f"(dropped: spans {stats['spans']}, logs {stats['logs']})"
        )
    if config.foreign_pans:
        expected = result.ground_truth["foreign"]["messages"]
        if foreign_sent != expected:
            raise ExportIncompleteError(
                f"other SDKs wrote {expected} messages, but Kafka acknowledged {foreign_sent}"
            )
        stats["foreign"] = {"messages": dict(foreign_sent)}
    return KafkaRun(result, stats)
