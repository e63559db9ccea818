"""The stream processor's settings, and the one place their defaults live.

The command line (``hopscope process``) states each option once with :func:`default` as its
default; the environment reaches the same fields through the options' ``HOPSCOPE_*`` variables;
library callers build :class:`ProcessorSettings` directly. Nothing here connects or imports a
client library, so the CLI can read the defaults without loading the processors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from hopscope.core.es_security import EsSecurity
from hopscope.core.settings import DEFAULT_INDEX_PREFIX
from hopscope.ingest import conventions as c
from hopscope.processors.slo import DEFAULT_SLOS, SLO

__all__ = ["ProcessorSettings", "default"]


@dataclass(frozen=True)
class ProcessorSettings:
    """Where to read, where to write, and the bounds.

    The one owner of every processor default: ``hopscope process`` takes its option defaults
    from here (:func:`default`), and so does the demo.
    """

    kafka_bootstrap: str
    es_url: str
    group: str = "hopscope-processors"
    spans_topic: str = c.TOPIC_SPANS
    logs_topic: str = c.TOPIC_LOGS
    dlq_topic: str = c.TOPIC_DLQ
    index_prefix: str = DEFAULT_INDEX_PREFIX
    trace_idle_s: float = 5.0
    max_open_spans: int = 200_000
    max_poll_records: int = 500
    # A member that died without leaving (SIGKILL, lost host) holds its partitions until its
    # session expires: kafka-python's 45 s default would stall them that long.
    session_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    # Short enough that a node back from an outage is found within seconds.
    backoff_max_s: float = 10.0
    # How long Elasticsearch and Kafka may stay silent at the start before the processor
    # stops with one line: a service never reached since the start is a wrong address or a
    # service not running, not an outage to wait out (hopscope.core.es_security).
    startup_timeout_s: float = 4.0
    metrics_port: int | None = None
    # Loopback by default: metrics are not for the world. A container sets 0.0.0.0.
    metrics_addr: str = "127.0.0.1"
    archive_dir: Path | None = None
    # kafka-python security settings (TLS, SASL) for the consumer and the dead-letter producer,
    # from hopscope.core.kafka_security; they hold the SASL password, hence no repr.
    kafka_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # Credentials and CA for Elasticsearch (secrets kept out of repr); None: from the
    # HOPSCOPE_ES_* variables when the processor starts (hopscope.core.es_security).
    es_security: EsSecurity | None = None
    # Memory bounds besides max_open_spans (hopscope.processors.assembly; docs/BAD_INPUT.md):
    # estimated bytes of the open traces (None: no byte bound; assembly.memory_bounds derives
    # it from a process budget), spans per trace, and estimated record bytes per bulk write
    # (a poll of large messages is written in parts).
    max_open_bytes: int | None = None
    max_trace_spans: int = 100_000
    max_batch_bytes: int = 8 * 1024 * 1024
    # Bulk writes in flight while the next messages are decoded (one writer thread); 0 writes
    # synchronously. Offsets are committed only behind acknowledgements either way
    # (hopscope.processors.checkpoint). More than 1 rarely helps: Elasticsearch shares the
    # machine's cores with the processor.
    max_bulks_in_flight: int = 1
    # The most one fetch takes from one partition: kafka-python's 1 MiB default means a fetch
    # per ~600 spans of ours. A memory budget (``hopscope process --max-memory-mb``) keeps the
    # default, writes synchronously and leaves the allocator alone (docs/BAD_INPUT.md, Memory).
    fetch_partition_bytes: int = 8 * 1024 * 1024
    # What the SLI counters count (hopscope.processors.slo): the same [slo.*] tables as the
    # alerting rules, or the rules would divide counters nobody increments.
    slos: tuple[SLO, ...] = DEFAULT_SLOS


def default(name: str) -> Any:
    """The default of the :class:`ProcessorSettings` field ``name``.

    >>> default("trace_idle_s"), default("group")
    (5.0, 'hopscope-processors')
    """
    for item in fields(ProcessorSettings):
        if item.name == name:
            if item.default is MISSING:
                raise KeyError(f"ProcessorSettings.{name} has no default")
            return item.default
    raise KeyError(f"ProcessorSettings has no field {name!r}")
