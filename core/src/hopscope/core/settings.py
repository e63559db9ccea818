"""Settings shared by every hopscope component, read from ``HOPSCOPE_*`` environment variables.

Endpoints resolve in this order: explicit argument, environment variable, then, only where the
caller passes it, a fallback such as the dev stack started by ``hopscope stack up``
(:func:`hopscope.stack.resolve_settings`). ``core`` never imports the stack itself: a production
service must not pick up a developer's stack from a state file. Secrets (SASL passwords, API
keys) are read by :mod:`hopscope.core.kafka_security` and :mod:`hopscope.core.es_security`; they
are never part of ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hopscope.core.env import env_optional
from hopscope.core.errors import SettingsError

ENV_KAFKA_BOOTSTRAP = "HOPSCOPE_KAFKA_BOOTSTRAP"
ENV_ES_URL = "HOPSCOPE_ES_URL"
ENV_CACHE_DIR = "HOPSCOPE_CACHE_DIR"
ENV_STATE_DIR = "HOPSCOPE_STATE_DIR"
ENV_JAVA_HOME = "HOPSCOPE_JAVA_HOME"

# The processors' Elasticsearch indices are <prefix>-<kind>-YYYY.MM.DD; the analysis, the
# Kibana assets and the least-privilege roles all name the same prefix.
DEFAULT_INDEX_PREFIX = "hopscope"


def default_cache_dir() -> Path:
    """Where downloaded Maven artifacts live: ``$HOPSCOPE_CACHE_DIR`` or ``~/.cache/hopscope``."""
    if value := env_optional(ENV_CACHE_DIR):
        return Path(value).expanduser()
    xdg = env_optional("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "hopscope"


def default_state_dir() -> Path:
    """Where the local stack keeps its data, logs and state file.

    ``$HOPSCOPE_STATE_DIR`` wins. As root the default is ``/var/lib/hopscope/stack``, because
    Elasticsearch runs as a dedicated system user that must be able to reach its directories,
    and root's home usually is not traversable by other users.
    """
    if value := env_optional(ENV_STATE_DIR):
        return Path(value).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/hopscope/stack")
    xdg = env_optional("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "hopscope" / "stack"


class FallbackEndpoints(Protocol):
    """Endpoints a fallback (the dev stack's state file) can offer."""

    @property
    def kafka_bootstrap(self) -> str: ...

    @property
    def es_url(self) -> str: ...


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
            kafka_bootstrap=env_optional(ENV_KAFKA_BOOTSTRAP),
            es_url=(env_optional(ENV_ES_URL) or "").rstrip("/") or None,
        )

    def resolved(
        self, fallback: Callable[[Path], FallbackEndpoints | None] | None = None
    ) -> Settings:
        """Fill missing endpoints from ``fallback(state_dir)``, or explain how to give them.

        Without a fallback, both endpoints must have been given (argument or environment).
        """
        if self.kafka_bootstrap and self.es_url:
            return self
        endpoints = fallback(self.state_dir) if fallback is not None else None
        kafka = self.kafka_bootstrap or (endpoints.kafka_bootstrap if endpoints else None)
        es = self.es_url or (endpoints.es_url if endpoints else None)
        if not kafka or not es:
            stack_hint = (
                f", or start the local stack with `hopscope stack up` "
                f"(looked for its state in {self.state_dir})"
                if fallback is not None
                else ""
            )
            raise SettingsError(
                f"no Kafka/Elasticsearch endpoints: set {ENV_KAFKA_BOOTSTRAP} and {ENV_ES_URL}"
                + stack_hint
            )
        return Settings(kafka, es, self.cache_dir, self.state_dir)
