"""Errors of the stream processors (see :mod:`hopscope.core.errors` for the base)::

HopscopeError
└── ProcessorError
    ├── DecodeError          a message is not valid OTLP: dead-letter it, go on
    ├── SinkUnavailableError Elasticsearch is down or overloaded: pause, retry, never drop
    │   └── SinkUnreachableError   nothing answered at all (refused, timed out)
    ├── NeverReachedError    a sink was unreachable for the whole start-up wait: stop
    └── SinkAccessError      credentials, privileges or TLS trust are wrong: stop, commit nothing
"""

from hopscope.core.errors import HopscopeError


class ProcessorError(HopscopeError):
    """Base class of the stream processors' errors."""


class DecodeError(ProcessorError):
    """A Kafka message is not a valid OTLP message; the text is the dead-letter reason."""


class SinkUnavailableError(ProcessorError):
    """Elasticsearch did not accept a bulk request (connection error, 429, 5xx)."""


class SinkUnreachableError(SinkUnavailableError):
    """Nothing answered (connection refused, host unknown, timeout). After a successful start
    an outage like any other; at the start, past the start-up wait, a configuration error."""


class NeverReachedError(ProcessorError):
    """A sink never answered since the processor started (a wrong URL, a node not running):
    the processor stops in one line instead of waiting for ever."""


class SinkAccessError(ProcessorError):
    """Elasticsearch refused the credentials (401) or a privilege (403), or TLS verification
    failed: retrying cannot help, so the processor stops; what was not acknowledged stays
    uncommitted and is read again once the configuration is fixed."""
