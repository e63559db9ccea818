"""Service-level objectives of the payment path: what the processors count and the alerts burn.

An :class:`SLO` names one edge of the call graph (``source`` → ``target`` service, as the hops
carry them) and two objectives over its client-side calls:

- latency: the share of calls that complete within ``threshold_s`` (``latency_objective``);
- errors: the share of calls that do not fail (``error_objective``).

The processors count, per SLO, every call, the slow ones and the failed ones
(:class:`~hopscope.processors.metrics.ProcessorMetrics`), so a burn rate is an exact ratio of
counters rather than an estimate from histogram buckets whose bounds need not match the
threshold. ``hopscope alerts generate`` turns the same definitions into Prometheus rules.

Definitions come from ``[slo.<name>]`` tables of ``hopscope.toml``; a table named like a
default replaces it, ``enabled = false`` drops it::

    [slo.authorize]
    source = "gateway"
    target = "payment"
    threshold_ms = 2500
    latency_objective = 99.5
    error_objective = 99.5
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

_NAME: Final = re.compile(r"^[a-z][a-z0-9_-]*$")
_KEYS: Final = frozenset({
    "source", "target", "threshold_ms", "latency_objective", "error_objective", "team",
    "description", "enabled",
})  # fmt: skip


@dataclass(frozen=True)
class SLO:
    """One edge's latency and error objectives (objectives as fractions, e.g. 0.995).

    Raises ``ValueError`` naming the field when a value is out of range.
    """

    name: str
    source: str
    target: str
    threshold_s: float
    latency_objective: float
    error_objective: float
    team: str = "payments"
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"SLO name {self.name!r} must match {_NAME.pattern}")
        if not self.source or not self.target:
            raise ValueError(f"SLO {self.name}: source and target must name services")
        if not self.threshold_s > 0:
            raise ValueError(f"SLO {self.name}: threshold must be > 0, got {self.threshold_s}")
        for field in ("latency_objective", "error_objective"):
            value = getattr(self, field)
            # 100 % leaves no error budget, so every burn rate would be infinite.
            if not 0 < value < 1:
                raise ValueError(f"SLO {self.name}: {field} must be in (0, 1), got {value}")


# Defaults from the simulator's payment network and what its owners would promise. The bank
# path (gateway → payment → clearing → bank adapter → issuer) is dominated by the issuer, which
# answers within 2 s or times out: 2.5 s is the time a card scheme's stand-in waits before
# answering for the issuer, so a slower authorization is lost anyway. The internal risk check
# and the ledger's database are milliseconds: tens of milliseconds mean a misrouted or
# saturated path. Error objectives leave room for issuer timeouts (about 1 % of bank calls).
DEFAULT_SLOS: Final[tuple[SLO, ...]] = (
    SLO("authorize", "gateway", "payment", 2.5, 0.995, 0.99,
        description="Card authorizations as the gateway sees them."),
    SLO("risk-check", "payment", "risk", 0.025, 0.99, 0.999,
        description="The payment service's synchronous fraud check."),
    SLO("clearing", "payment", "clearing", 2.5, 0.995, 0.99,
        description="Clearing with two-phase commit and the bank round trip."),
    SLO("issuer", "bank-adapter", "issuer", 2.5, 0.995, 0.99, team="bank-integration",
        description="The issuer's answer through the bank adapter."),
    SLO("ledger-db", "payment", "postgresql", 0.05, 0.999, 0.999,
        description="The payment service's ledger queries."),
)  # fmt: skip


def slos_from_document(document: Mapping[str, Any]) -> tuple[SLO, ...]:
    """The SLOs of a parsed ``hopscope.toml``: the defaults, overridden by ``[slo.<name>]``.

    Parameters:
        document: the whole TOML document; only its ``slo`` table is read.

    Returns:
        The defaults in their order (minus disabled ones), then new SLOs in file order.

    Raises:
        ValueError: naming the table and the problem (unknown key, missing field, bad value).

    Examples:
        >>> [s.name for s in slos_from_document({"slo": {"issuer": {"enabled": False}}})]
        ['authorize', 'risk-check', 'clearing', 'ledger-db']
        >>> slos_from_document({"slo": {"risk-check": {"threshold_ms": 40}}})[1].threshold_s
        0.04
    """
    tables = document.get("slo", {})
    if not isinstance(tables, Mapping):
        raise ValueError("[slo] must hold one table per SLO, e.g. [slo.authorize]")
    slos = {slo.name: slo for slo in DEFAULT_SLOS}
    for name, table in tables.items():
        if not isinstance(table, Mapping):
            raise ValueError(f"[slo.{name}] must be a table")
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise ValueError(f"[slo.{name}]: unknown keys {unknown}; known: {sorted(_KEYS)}")
        if table.get("enabled", True) is False:
            slos.pop(name, None)
            continue
        # A table named like a default overrides only the keys it sets.
        base = slos.get(name)
        try:
            slos[name] = SLO(
                name=name,
                source=str(table.get("source", base.source if base else "")),
                target=str(table.get("target", base.target if base else "")),
                threshold_s=float(table["threshold_ms"]) / 1000
                if "threshold_ms" in table
                else _required(base, name, "threshold_ms").threshold_s,
                latency_objective=_percent(table, "latency_objective", base, name),
                error_objective=_percent(table, "error_objective", base, name),
                team=str(table.get("team", base.team if base else "payments")),
                description=str(table.get("description", base.description if base else "")),
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"[slo.{name}]: {error}") from None
    return tuple(slos.values())


def _required(base: SLO | None, name: str, key: str) -> SLO:
    if base is None:
        raise ValueError(f"missing {key} (no default SLO is called {name!r})")
    return base


def _percent(table: Mapping[str, Any], key: str, base: SLO | None, name: str) -> float:
    """An objective written as a percentage (99.9) in the file, a fraction in the code."""
    if key in table:
        # Rounded: 99.9 / 100 is 0.9990000000000001, which would leak into the rules.
        return round(float(table[key]) / 100, 9)
    value: float = getattr(_required(base, name, key), key)
    return value


def load_slos(path: Path | None = None) -> tuple[SLO, ...]:
    """The SLOs of ``path`` (default ``./hopscope.toml`` when present, else the defaults).

    Raises ``ValueError`` naming the file when it cannot be read or an SLO is malformed.
    """
    if path is None:
        path = Path("hopscope.toml")
        if not path.is_file():
            return DEFAULT_SLOS
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        return slos_from_document(document)
    except (OSError, tomllib.TOMLDecodeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
