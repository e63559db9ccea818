"""Settings shared by every hopscope component, read from ``HOPSCOPE_*`` environment variables.

Endpoints resolve in this order: explicit argument, environment variable, the local stack
started by ``hopscope stack up`` (its state file). Secrets (SASL passwords, API keys) are read
here too in later components; they are never part of ``repr``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hopscope.errors import SettingsError

ENV_KAFKA_BOOTSTRAP = "HOPSCOPE_KAFKA_BOOTSTRAP"
ENV_ES_URL = "HOPSCOPE_ES_URL"
ENV_CACHE_DIR = "HOPSCOPE_CACHE_DIR"
ENV_STATE_DIR = "HOPSCOPE_STATE_DIR"
ENV_JAVA_HOME = "HOPSCOPE_JAVA_HOME"


def default_cache_dir() -> Path:
    """Where downloaded Maven artifacts live: ``$HOPSCOPE_CACHE_DIR`` or ``~/.cache/hopscope``."""
    if value := os.environ.get(ENV_CACHE_DIR):
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "hopscope"


def default_state_dir() -> Path:
    """Where the local stack keeps its data, logs and state file.

    ``$HOPSCOPE_STATE_DIR`` wins. As root the default is ``/var/lib/hopscope/stack``, because
    Elasticsearch runs as a dedicated system user that must be able to reach its directories,
    and root's home usually is not traversable by other users.
    """
    if value := os.environ.get(ENV_STATE_DIR):
        return Path(value).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/hopscope/stack")
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "hopscope" / "stack"


@dataclass(frozen=True)
class Settings:
    """Endpoints and directories, as the user configured them.

    ``kafka_bootstrap`` and ``es_url`` are ``None`` when neither an argument nor the
    environment names them; :meth:`resolved` then asks the local stack.
    """

    kafka_bootstrap: str | None = None
    es_url: str | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    state_dir: Path = field(default_factory=default_state_dir)

    @classmethod
    def from_env(cls) -> Settings:
        """Read the ``HOPSCOPE_*`` environment variables."""
        return cls(
            kafka_bootstrap=os.environ.get(ENV_KAFKA_BOOTSTRAP) or None,
            es_url=(os.environ.get(ENV_ES_URL) or "").rstrip("/") or None,
        )

    def resolved(self) -> Settings:
        """Fill missing endpoints from the running local stack, or explain how to get one."""
        if self.kafka_bootstrap and self.es_url:
            return self
        # Imported here: the stack launcher is only needed when no endpoint was given.
        from hopscope.stack.launcher import read_endpoints

        endpoints = read_endpoints(self.state_dir)
        kafka = self.kafka_bootstrap or (endpoints.kafka_bootstrap if endpoints else None)
        es = self.es_url or (endpoints.es_url if endpoints else None)
        if not kafka or not es:
            raise SettingsError(
                f"no Kafka/Elasticsearch endpoints: set {ENV_KAFKA_BOOTSTRAP} and {ENV_ES_URL}, "
                f"or start the local stack with `hopscope stack up` "
                f"(looked for its state in {self.state_dir})"
            )
        return Settings(kafka, es, self.cache_dir, self.state_dir)
