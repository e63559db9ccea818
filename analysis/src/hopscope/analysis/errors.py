"""Errors of the batch analysis (see :mod:`hopscope.core.errors` for the base)::

    HopscopeError
    └── AnalysisError        anything the analysis raises on purpose
        └── LoaderError      a source could not be read: a file in no known format, a
                             malformed record, Elasticsearch refusing or unreachable

Messages name the source (file path, index pattern, URL) and what was expected, because the
command line prints them to the user as they are.
"""

from hopscope.core.errors import HopscopeError


class AnalysisError(HopscopeError):
    """Base class of the analysis package's errors."""


class LoaderError(AnalysisError):
    """A loader could not read its source; the message names the source and the cause."""
