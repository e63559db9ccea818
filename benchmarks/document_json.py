"""Per-span CPU of making the documents and serializing their bulk lines, on telemetrygen traffic.

``--traces`` telemetrygen-shaped traces (``lets-go`` over ``--child-spans`` ``okey-dokey-N``
spans, one message each, as ``pipeline_vs_collector.py`` sends them) are decoded and derived
once; then, timed apart, with the native core:

1. documents: every span's document and every trace's derived documents (hops, traces),
   ``Document`` included, for all traces at once;
2. bulk lines: :func:`~hopscope.processors.sink.bulk_lines` over all those documents, after
   all were made (as the bulk thread serializes a batch made before it: thousands of bodies,
   cache-cold).

Each is run ``--repeat`` times; the best (least disturbed) is reported, per span. The allocator
is tuned as ``hopscope process`` tunes it (:func:`~hopscope.processors.runtime.tune_allocator`):
without that, orjson's results, held by the thousand, cost several times as much. The script
uses the public functions only, so the same file measures any revision of the processor: run
it with that revision's packages on ``PYTHONPATH`` to compare (docs/SCALING.md says how).

    python benchmarks/document_json.py [--traces 2000] [--child-spans 5] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import defaultdict

from pipeline_vs_collector import telemetrygen_messages

from hopscope.processors import core
from hopscope.processors.derive import derive_all
from hopscope.processors.documents import Document, derived_documents, span_document
from hopscope.processors.pipeline import decode
from hopscope.processors.records import SpanRecord
from hopscope.processors.runtime import tune_allocator
from hopscope.processors.sink import bulk_lines

RECEIVED_NS = 1_800_000_000_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--child-spans", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    core.select("native")
    tune_allocator()
    messages, spans = telemetrygen_messages(args.traces, args.child_spans)
    records: list[SpanRecord] = []
    for _key, value in messages:
        records += decode("spans", value, received_ns=RECEIVED_NS).spans
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in records:
        by_trace[span.trace_id].append(span)
    derived = [derive_all(trace) for trace in by_trace.values()]
    made: list[float] = []
    sent: list[float] = []
    gc.disable()  # the collector's pauses are the processor's own business, not this figure's
    for _ in range(args.repeat):
        started = time.process_time()
        documents: list[Document] = [span_document(span, "bench") for span in records]
        for each in derived:
            documents += derived_documents(each, "bench")
        made.append(time.process_time() - started)
        started = time.process_time()
        size = sum(len(line) for line in bulk_lines(documents))
        sent.append(time.process_time() - started)
        del documents
    gc.enable()
    best_made, best_sent = min(made) / spans * 1e6, min(sent) / spans * 1e6
    print(f"{spans:,} spans, {size / spans:,.0f} B of bulk lines per span, best of {args.repeat}")
    print(f"documents    {best_made:5.2f} µs CPU/span")
    print(f"bulk lines   {best_sent:5.2f} µs CPU/span")
    print(f"together     {best_made + best_sent:5.2f} µs CPU/span")


if __name__ == "__main__":
    main()
