"""Loaders: Elasticsearch, the Parquet archive and OTLP/Jaeger JSON files -> a Dataset."""

from hopscope.analysis.loaders._records import dataset_from_documents, dataset_from_records
from hopscope.analysis.loaders.elasticsearch import count_elasticsearch, load_elasticsearch
from hopscope.analysis.loaders.files import (
    DEFAULT_CSV_COLUMNS,
    CsvFormat,
    jaeger_spans,
    load_file,
    load_files,
)
from hopscope.analysis.loaders.parquet import load_parquet
from hopscope.analysis.loaders.partials import build_partials, load_partials

# Re-exported: the documents the processors would index for records gathered in memory.
from hopscope.processors.pipeline import documents_from_records

__all__ = [
    "DEFAULT_CSV_COLUMNS",
    "CsvFormat",
    "build_partials",
    "count_elasticsearch",
    "dataset_from_documents",
    "dataset_from_records",
    "documents_from_records",
    "jaeger_spans",
    "load_elasticsearch",
    "load_file",
    "load_files",
    "load_parquet",
    "load_partials",
]
