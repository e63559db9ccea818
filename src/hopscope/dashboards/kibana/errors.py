"""Errors of the Kibana integration (see :mod:`hopscope.processors.errors` for the base)::

ProcessorError
└── KibanaError
    ├── KibanaUnreachableError   no connection (wrong URL, Kibana down or still starting)
    ├── KibanaAuthError          401/403: missing or wrong credentials, or too few privileges
    ├── KibanaResponseError      any other non-2xx answer, or a body that is not the API's
    └── KibanaImportError        Kibana answered, but some objects were not imported
"""

from __future__ import annotations

from typing import Any

from hopscope.processors.errors import ProcessorError


class KibanaError(ProcessorError):
    """Base class of the errors talking to Kibana."""


class KibanaUnreachableError(KibanaError):
    """Kibana did not answer at the given URL."""


class KibanaAuthError(KibanaError):
    """Kibana refused the credentials (401) or the user's privileges (403)."""


class KibanaResponseError(KibanaError):
    """Kibana answered with an unexpected status or body."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KibanaImportError(KibanaError):
    """The import ran, but objects failed (version conflicts, missing references...)."""

    def __init__(self, message: str, *, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors
