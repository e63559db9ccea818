"""Errors of the stream processors (see :mod:`hopscope.errors` for the base)::

HopscopeError
└── ProcessorError
    ├── DecodeError          a message is not valid OTLP: dead-letter it, go on
    └── SinkUnavailableError Elasticsearch is down or overloaded: pause, retry, never drop
"""

from hopscope.errors import HopscopeError


class ProcessorError(HopscopeError):
    """Base class of the stream processors' errors."""


class DecodeError(ProcessorError):
    """A Kafka message is not a valid OTLP message; the text is the dead-letter reason."""


class SinkUnavailableError(ProcessorError):
    """Elasticsearch did not accept a bulk request (connection error, 429, 5xx)."""
