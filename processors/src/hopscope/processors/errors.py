"""Errors of the stream processors (see :mod:`hopscope.core.errors` for the base)::

HopscopeError
└── ProcessorError
    ├── DecodeError          a message is not valid OTLP: dead-letter it, go on
    ├── SinkUnavailableError Elasticsearch is down or overloaded: pause, retry, never drop
    └── SinkAccessError      credentials, privileges or TLS trust are wrong: stop, commit nothing
"""

from hopscope.core.errors import HopscopeError


class ProcessorError(HopscopeError):
    """Base class of the stream processors' errors."""


class DecodeError(ProcessorError):
    """A Kafka message is not a valid OTLP message; the text is the dead-letter reason."""


class SinkUnavailableError(ProcessorError):
    """Elasticsearch did not accept a bulk request (connection error, 429, 5xx)."""


class SinkAccessError(ProcessorError):
    """Elasticsearch refused the credentials (401) or a privilege (403), or TLS verification
    failed: retrying cannot help, so the processor stops; what was not acknowledged stays
    uncommitted and is read again once the configuration is fixed."""
