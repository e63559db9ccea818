"""``hopscope process``: the stream processor, Kafka → Elasticsearch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hopscope.cli._support import err, out
from hopscope.processors.settings import ProcessorSettings, default
from hopscope.stack import resolve_settings

if TYPE_CHECKING:
    from hopscope.processors.slo import SLO


def process_command(
    ctx: typer.Context,
    drain: Annotated[
        bool, typer.Option(help="Stop once caught up with the topics (batch use, demo, tests).")
    ] = False,
    group: Annotated[str, typer.Option(help="Consumer group.")] = default("group"),
    index_prefix: Annotated[
        str, typer.Option(envvar="HOPSCOPE_INDEX_PREFIX", help="Elasticsearch index prefix.")
    ] = default("index_prefix"),
    spans_topic: Annotated[str, typer.Option(envvar="HOPSCOPE_SPANS_TOPIC")] = default(
        "spans_topic"
    ),
    logs_topic: Annotated[str, typer.Option(envvar="HOPSCOPE_LOGS_TOPIC")] = default("logs_topic"),
    dlq_topic: Annotated[str, typer.Option(envvar="HOPSCOPE_DLQ_TOPIC")] = default("dlq_topic"),
    trace_idle: Annotated[
        float, typer.Option(help="Seconds without a new span after which a trace is complete.")
    ] = default("trace_idle_s"),
    max_open_spans: Annotated[
        int, typer.Option(help="Memory bound: open spans before the oldest traces are flushed.")
    ] = default("max_open_spans"),
    max_memory_mb: Annotated[
        int | None,
        typer.Option(
            help="Memory bound in MB of resident memory: sets the open traces' byte bound "
            "(and lowers --max-open-spans to fit); traces past it are flushed incomplete."
        ),
    ] = None,
    max_trace_spans: Annotated[
        int, typer.Option(help="Spans of one trace before it is flushed incomplete.")
    ] = default("max_trace_spans"),
    session_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds before the group gives a silent member's partitions to the others."
        ),
    ] = default("session_timeout_s"),
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on ADDR:PORT/metrics.")
    ] = None,
    metrics_addr: Annotated[
        str,
        typer.Option(
            envvar="HOPSCOPE_METRICS_ADDR",
            help="Address the metrics listen on (0.0.0.0 in a container).",
        ),
    ] = default("metrics_addr"),
    archive_dir: Annotated[
        Path | None,
        typer.Option(
            help="Also write the records as hourly Parquet files here (after ES "
            "acknowledged them), for the batch analysis."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            envvar="HOPSCOPE_WORKERS",
            help="Processor processes in the group (default: one per core; 1 with --drain). "
            "A worker that dies is restarted; SIGHUP restarts them one by one; metrics of "
            "worker i on --metrics-port + i - 1.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Consume OTLP from Kafka; index spans, logs, hops, failovers, coordination and trace
    summaries into Elasticsearch; commit offsets only after Elasticsearch acknowledged.

    A secured Elasticsearch: HOPSCOPE_ES_API_KEY, or HOPSCOPE_ES_USERNAME and
    HOPSCOPE_ES_PASSWORD; HOPSCOPE_ES_CA_CERTS for a private CA.

    A secured Kafka: HOPSCOPE_KAFKA_SECURITY_PROTOCOL (e.g. SASL_SSL),
    HOPSCOPE_KAFKA_SASL_MECHANISM, _USERNAME and _PASSWORD; HOPSCOPE_KAFKA_SSL_CAFILE.

    With several workers, each is a process of its own and a member of the group; SIGTERM
    stops them all cleanly, a dead worker is reported and restarted, and a crash loop (more
    than 5 deaths in a minute) stops everything with exit code 1."""
    import signal

    from hopscope.core.es_security import EsSecurity
    from hopscope.core.kafka_security import KafkaSecurity
    from hopscope.processors.runtime import Processor, tune_allocator

    settings = resolve_settings()
    assert settings.kafka_bootstrap and settings.es_url
    # Read (and checked) before anything connects: HOPSCOPE_ES_API_KEY, _USERNAME/_PASSWORD,
    # _CA_CERTS, _VERIFY_CERTS.
    es_security = EsSecurity.from_env()
    max_open_bytes = None
    # Throughput over memory, unless a budget is set: a bulk in flight while the next is built,
    # 8 MiB fetches and a heap kept for the next bulk each hold memory the budget does not
    # count (ProcessorSettings).
    lean = {}
    if max_memory_mb is not None:
        lean = {"max_bulks_in_flight": 0, "fetch_partition_bytes": 1024 * 1024}
        from hopscope.processors.assembly import memory_bounds

        try:
            spans_fit, max_open_bytes = memory_bounds(max_memory_mb)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--max-memory-mb") from None
        max_open_spans = min(max_open_spans, spans_fit)
    processor_settings = ProcessorSettings(
        kafka_bootstrap=settings.kafka_bootstrap, es_url=settings.es_url, group=group,
        spans_topic=spans_topic, logs_topic=logs_topic, dlq_topic=dlq_topic,
        index_prefix=index_prefix, trace_idle_s=trace_idle, max_open_spans=max_open_spans,
        session_timeout_s=session_timeout,
        metrics_port=metrics_port, metrics_addr=metrics_addr, archive_dir=archive_dir,
        es_security=es_security, max_open_bytes=max_open_bytes, max_trace_spans=max_trace_spans,
        # Checked before anything connects, like the Elasticsearch settings.
        kafka_options=KafkaSecurity.from_env().client_options(),
        slos=_slos(ctx), **lean,
    )  # fmt: skip
    if workers is None:
        from hopscope.cli._workers import default_workers

        workers = 1 if drain else default_workers()
    if workers > 1:
        _supervise(processor_settings, workers, drain, ctx)
        return
    if not lean:
        tune_allocator()  # this process runs the processor: keep its heap for the next bulk
    with Processor.from_settings(processor_settings) as processor:
        # Signals only request the stop; the loop finishes its iteration and commits.
        signal.signal(signal.SIGTERM, lambda *_: processor.stop())
        signal.signal(signal.SIGINT, lambda *_: processor.stop())
        with err.status("processing") as status:
            counts = processor.run(
                drain=drain,
                progress=lambda n: status.update(
                    f"processing: {n.messages} messages, "
                    + ", ".join(f"{k} {v}" for k, v in sorted(n.indexed.items()))
                ),
            )
    indexed = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.indexed.items()))
    out.print(
        f"processed {counts.messages} messages: {indexed or 'nothing indexed'}; "
        f"dead letters {counts.dead_letters}, retries {counts.retries}, "
        f"incomplete traces {counts.incomplete_traces}, late spans {counts.late_spans}, "
        f"sanitized {counts.sanitized.total()}",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip


def _supervise(settings: ProcessorSettings, workers: int, drain: bool, ctx: typer.Context) -> None:
    """Run ``workers`` processor processes (hopscope.cli._workers); exit with their verdict."""
    import signal

    from hopscope.cli._workers import Supervisor

    log_level = str(ctx.find_root().params.get("log_level") or "warning")
    supervisor = Supervisor(
        settings, workers, drain=drain, log_level=log_level,
        report=lambda line: err.print(f"process: {line}", markup=False, highlight=False,
                                      soft_wrap=True),
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: supervisor.request_stop())
    signal.signal(signal.SIGINT, lambda *_: supervisor.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: supervisor.request_roll())
    code = supervisor.run()
    if code != 0:
        raise typer.Exit(code)


def _slos(ctx: typer.Context) -> tuple[SLO, ...]:
    """The ``[slo.*]`` tables of the root ``--config`` file: the SLI counters must count what
    ``hopscope alerts generate`` wrote rules for."""
    from hopscope.processors.slo import load_slos

    try:
        return load_slos(ctx.find_root().params.get("config"))
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--config") from None
