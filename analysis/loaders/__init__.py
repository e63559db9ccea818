"""Loaders: Elasticsearch, the Parquet archive and OTLP/Jaeger JSON files -> a Dataset."""

from hopscope.analysis.loaders._records import (
    dataset_from_documents,
    dataset_from_records,
    documents_from_records,
)

__all__ = ["dataset_from_documents", "dataset_from_records", "documents_from_records"]
