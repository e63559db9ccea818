"""The local Kafka + Elasticsearch stack, fetched from Maven Central and run without Docker."""

from hopscope.stack.errors import (
    JavaError,
    MavenError,
    PortInUseError,
    ServiceExitedError,
    StackError,
    StackNotRunningError,
)
from hopscope.stack.launcher import (
    Endpoints,
    ServiceStatus,
    StackOptions,
    StackState,
    down,
    env_lines,
    log_path,
    read_endpoints,
    resolve_settings,
    start_service,
    status,
    stop_service,
    up,
)

__all__ = [
    "Endpoints",
    "JavaError",
    "MavenError",
    "PortInUseError",
    "ServiceExitedError",
    "ServiceStatus",
    "StackError",
    "StackNotRunningError",
    "StackOptions",
    "StackState",
    "down",
    "env_lines",
    "log_path",
    "read_endpoints",
    "resolve_settings",
    "start_service",
    "status",
    "stop_service",
    "up",
]
