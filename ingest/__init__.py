"""hopscope.ingest: instrumentation for payment services (OpenTelemetry SDK → Kafka, OTLP)."""
