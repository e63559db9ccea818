"""hopscope.processors: Kafka consumers that assemble traces, derive hops, failovers and
coordination delays, and index everything into Elasticsearch."""
