"""Errors of the local stack launcher (see :mod:`hopscope.core.errors` for the whole hierarchy)."""

from hopscope.core.errors import HopscopeError

DOCKER_HINT = "with Docker, `docker compose -f deploy/compose.yaml up -d` starts the same services"


class StackError(HopscopeError):
    """The local Kafka + Elasticsearch stack could not be fetched, started or stopped."""


class JavaError(StackError):
    """No usable Java runtime: missing, not executable, or older than the services need."""


class MavenError(StackError):
    """Maven is missing, or could not fetch the artifacts from Maven Central."""


class PortInUseError(StackError):
    """A port the stack was asked to bind is taken by another process."""


class ServiceExitedError(StackError):
    """A service process exited (or never became healthy) while the stack was starting."""


class StackNotRunningError(StackError):
    """A command needs the running stack, and there is none in the state directory."""
