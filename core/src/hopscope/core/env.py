"""The one reader of ``HOPSCOPE_*`` environment variables for the library (the CLI reads the
same names through its options' ``envvar``, with the defaults of the settings models).

Dependency-free on purpose: the SDK reads its settings through it inside payment services.
A malformed value is logged and the default used, as OpenTelemetry's SDK does for ``OTEL_*``:
telemetry settings must never take a payment service down. Settings whose mistakes must stop a
process (credentials, TLS) are checked by :mod:`hopscope.core.kafka_security` and
:mod:`hopscope.core.es_security`, which raise instead.

>>> env_int("HOPSCOPE_DOCTEST_UNSET", 7, environ={})
7
>>> env_bool("X", False, environ={"X": "yes"}), env_float("X", 1.0, environ={"X": "0.25"})
(True, 0.25)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
D = TypeVar("D", int, None)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _read(
    name: str, default: T, parse: Callable[[str], T], kind: str, environ: Mapping[str, str] | None
) -> T:
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value:
        return default
    try:
        return parse(value)
    except ValueError:
        logger.warning("%s=%r is not %s; using the default %r", name, value, kind, default)
        return default


def env_str(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    """``name``'s value, or ``default`` when unset or empty."""
    return _read(name, default, str, "a string", environ)


def env_optional(name: str, *, environ: Mapping[str, str] | None = None) -> str | None:
    """``name``'s value, or None when unset or empty."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or None


def env_int(
    name: str, default: D, *, minimum: int | None = None, environ: Mapping[str, str] | None = None
) -> int | D:
    """``name`` as an integer (at least ``minimum``), or ``default`` when unset, empty or
    malformed (logged)."""

    def parse(value: str) -> int:
        number = int(value)
        if minimum is not None and number < minimum:
            raise ValueError(value)
        return number

    kind = "an integer" if minimum is None else f"an integer of at least {minimum}"
    return _read(name, default, parse, kind, environ)


def env_float(name: str, default: float, *, environ: Mapping[str, str] | None = None) -> float:
    """``name`` as a number, or ``default`` when unset, empty or malformed (logged)."""
    return _read(name, default, float, "a number", environ)


def _parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(value)


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    """``name`` as a flag (1/true/yes/on, 0/false/no/off), or ``default`` (malformed: logged)."""
    return _read(name, default, _parse_bool, "true or false", environ)
