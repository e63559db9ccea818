"""Kibana assets for hopscope's indices: saved objects generated from the index templates,
their import into Kibana, and Discover links to one trace."""

from hopscope.dashboards.kibana.client import ImportedObject, ImportResult, import_saved_objects
from hopscope.dashboards.kibana.errors import (
    KibanaAuthError,
    KibanaError,
    KibanaImportError,
    KibanaResponseError,
    KibanaUnreachableError,
)
from hopscope.dashboards.kibana.links import discover_url, trace_link
from hopscope.dashboards.kibana.saved_objects import AssetError, generate, ndjson, parse_ndjson

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
    "trace_link",
]
