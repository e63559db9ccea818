"""hopscope: log and trace analytics for payment systems.

The top-level package holds only what the SDK (`hopscope.ingest`), the stream processors
(`hopscope.processors`) and the batch analysis (`hopscope.analysis`) share: settings, errors,
the `hopscope` command line and the local Kafka + Elasticsearch stack launcher.
"""

from hopscope.errors import HopscopeError
from hopscope.settings import Settings

__version__ = "0.1.0"

__all__ = ["HopscopeError", "Settings", "__version__"]
