"""Kibana assets for hopscope's indices: saved objects generated from the index templates,
their import into Kibana, and Discover links to one trace."""

from hopscope.processors.kibana.client import ImportedObject, ImportResult, import_saved_objects
from hopscope.processors.kibana.errors import (
    KibanaAuthError,
    KibanaError,
    KibanaImportError,
    KibanaResponseError,
    KibanaUnreachableError,
)
from hopscope.processors.kibana.links import discover_url
from hopscope.processors.kibana.saved_objects import AssetError, generate, ndjson, parse_ndjson

__all__ = [
    "AssetError",
    "ImportResult",
    "ImportedObject",
    "KibanaAuthError",
    "KibanaError",
    "KibanaImportError",
    "KibanaResponseError",
    "KibanaUnreachableError",
    "discover_url",
    "generate",
    "import_saved_objects",
    "ndjson",
    "parse_ndjson",
]
