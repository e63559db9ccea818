"""The base error of hopscope.

Every package raises a subclass, so the command line catches one type and prints
``Type: message`` instead of a traceback::

    HopscopeError
    ├── SettingsError                  (hopscope.core.settings)
    │   ├── KafkaSecurityError         (hopscope.core.kafka_security)
    │   └── EsSecurityError            (hopscope.core.es_security)
    ├── KafkaConnectError              (hopscope.core.kafka_security)
    ├── EsUnreachableError             (hopscope.core.es_security)
    └── StackError                     (hopscope.stack.errors)
        ├── JavaError
        ├── MavenError
        ├── PortInUseError
        ├── ServiceExitedError
        └── StackNotRunningError
"""


class HopscopeError(Exception):
    """Base class of every error hopscope raises on purpose.

    Messages say what happened, the likely cause and the values involved, because they are
    printed to an operator as they are.
    """


class SettingsError(HopscopeError):
    """A setting (flag or ``HOPSCOPE_*`` environment variable) is missing or malformed."""
