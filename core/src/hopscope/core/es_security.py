"""Credentials and TLS trust for Elasticsearch from the environment, and the client factory.

Every Elasticsearch client hopscope makes (processors, analysis loaders, demo) comes from
:func:`es_client`, so one set of variables secures them all:

================================  =======================================================
``HOPSCOPE_ES_API_KEY``           an encoded API key (the ``encoded`` field of
                                  ``POST /_security/api_key``), or ``id:api_key``
``HOPSCOPE_ES_USERNAME``          basic authentication (with ``HOPSCOPE_ES_PASSWORD``);
``HOPSCOPE_ES_PASSWORD``          not together with an API key
``HOPSCOPE_ES_CA_CERTS``          PEM file of the CA that signed the node's HTTP certificate
``HOPSCOPE_ES_VERIFY_CERTS``      ``true`` (default) or ``false``: check the certificate
================================  =======================================================

Secrets never leave this module in readable form: :class:`EsSecurity` leaves them out of its
``repr``, validation messages name variables, never values, and :func:`access_problem` turns
the client's authentication, authorization and TLS failures into messages that say what to fix
without quoting a credential.

The least-privilege roles the components need are here too (:func:`processor_role`,
:func:`reader_role`), as the JSON that ``PUT /_security/role/<name>`` and the
``role_descriptors`` of an API key take; ``docs/SECURITY.md`` quotes them.

Errors::

    HopscopeError
    ├── SettingsError
    │   └── EsSecurityError   a HOPSCOPE_ES_* variable is missing, contradictory or malformed
    └── EsUnreachableError    nothing answered at the URL since the start (a wrong URL, a
                              node not running): :func:`wait_reachable`

(Refusals by the node itself surface as the caller's errors: ``SinkAccessError`` in the
processors, ``LoaderError`` in the loaders, with :func:`access_problem`'s message.)

This module imports nothing heavy: the ``elasticsearch`` package is imported only when a
client is made, so the SDK never pulls it in.
"""

from __future__ import annotations

import base64
import os
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from hopscope.core.errors import HopscopeError, SettingsError
from hopscope.core.settings import DEFAULT_INDEX_PREFIX

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

ENV_ES_API_KEY: Final = "HOPSCOPE_ES_API_KEY"
ENV_ES_USERNAME: Final = "HOPSCOPE_ES_USERNAME"
ENV_ES_PASSWORD: Final = "HOPSCOPE_ES_PASSWORD"  # noqa: S105 (a variable name)
ENV_ES_CA_CERTS: Final = "HOPSCOPE_ES_CA_CERTS"
ENV_ES_VERIFY_CERTS: Final = "HOPSCOPE_ES_VERIFY_CERTS"

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

# How long a command waits for an Elasticsearch that never answered since it started: long
# enough for a node that is still binding its port, short enough that a wrong URL is reported
# while the user is still looking at the terminal.
REACH_TIMEOUT_S: Final = 4.0

# The record kinds derived from spans (hopscope.processors.schema): their documents may be
# deleted by the processor (a trace derived again, see processor_role); spans and logs not.
DERIVED_KINDS: Final = ("hops", "traces", "failovers", "coordination")


class EsUnreachableError(HopscopeError):
    """Nothing answered at the Elasticsearch URL since the command started: a configuration
    error (wrong URL, node not running), reported in one line rather than retried for ever."""


class EsSecurityError(SettingsError):
    """A ``HOPSCOPE_ES_*`` setting is missing, contradictory or malformed; the message names
    the variable, never a secret's value."""


@dataclass(frozen=True)
class EsSecurity:
    """How to authenticate to Elasticsearch and which certificates to trust.

    At most one of ``api_key`` and ``username``/``password``; neither means no authentication
    (a node with security off). ``ca_certs`` is a PEM file; without it the system's trust
    store (certifi) is used. The secrets are left out of ``repr``, so logging the settings, or
    an object holding them, never shows one.

    Raises:
        EsSecurityError: both an API key and a username, a username without a password (or the
            reverse), or a CA file that does not exist. Messages never contain a secret.

    Examples:
        >>> EsSecurity(username="hopscope-processor", password="s3cret")
        EsSecurity(username='hopscope-processor', ca_certs=None, verify_certs=True)
        >>> EsSecurity(api_key="aWQ6a2V5").auth_method
        'api_key'
    """

    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: Path | None = None
    verify_certs: bool = True

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise EsSecurityError(f"the Elasticsearch API key ({ENV_ES_API_KEY}) is empty")
        if self.api_key and (self.username or self.password):
            raise EsSecurityError(
                f"both an Elasticsearch API key ({ENV_ES_API_KEY}) and basic authentication "
                f"({ENV_ES_USERNAME}/{ENV_ES_PASSWORD}) are set; use one of them"
            )
        if self.username and not self.password:
            raise EsSecurityError(
                f"Elasticsearch user {self.username!r} ({ENV_ES_USERNAME}) has no password: "
                f"set {ENV_ES_PASSWORD}"
            )
        if self.password and not self.username:
            raise EsSecurityError(
                f"an Elasticsearch password ({ENV_ES_PASSWORD}) is set without a username: "
                f"set {ENV_ES_USERNAME}"
            )
        if self.ca_certs is not None and not Path(self.ca_certs).is_file():
            raise EsSecurityError(
                f"the Elasticsearch CA file {self.ca_certs} ({ENV_ES_CA_CERTS}) does not exist "
                f"or is not a file; it should be the PEM certificate of the CA that signed the "
                f"node's HTTP certificate"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EsSecurity:
        """Read the ``HOPSCOPE_ES_*`` variables (empty ones count as unset).

        Parameters:
            environ: the variables to read (default ``os.environ``).

        Raises:
            EsSecurityError: as the constructor, or ``HOPSCOPE_ES_VERIFY_CERTS`` is not a
                boolean.
        """
        env = os.environ if environ is None else environ
        verify_text = (env.get(ENV_ES_VERIFY_CERTS) or "true").strip().lower()
        if verify_text not in _TRUE | _FALSE:
            raise EsSecurityError(
                f"{ENV_ES_VERIFY_CERTS}={env.get(ENV_ES_VERIFY_CERTS)!r} is not a boolean "
                f"(true/false)"
            )
        ca_certs = env.get(ENV_ES_CA_CERTS) or None
        return cls(
            api_key=env.get(ENV_ES_API_KEY) or None,
            username=env.get(ENV_ES_USERNAME) or None,
            password=env.get(ENV_ES_PASSWORD) or None,
            ca_certs=Path(ca_certs).expanduser() if ca_certs else None,
            verify_certs=verify_text in _TRUE,
        )

    @property
    def auth_method(self) -> str:
        """``"api_key"``, ``"basic"`` or ``"none"``: safe to log."""
        if self.api_key:
            return "api_key"
        return "basic" if self.username else "none"

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``elasticsearch.Elasticsearch``: credentials and TLS.

        An API key written as ``id:api_key`` is passed as the pair; an encoded one as it is.
        """
        options: dict[str, Any] = {"verify_certs": self.verify_certs}
        if self.api_key:
            key_id, sep, key = self.api_key.strip().partition(":")
            options["api_key"] = (key_id, key) if sep else self.api_key.strip()
        elif self.username and self.password:
            options["basic_auth"] = (self.username, self.password)
        if self.ca_certs is not None:
            options["ca_certs"] = str(self.ca_certs)
        if not self.verify_certs:
            # The user chose not to verify; one warning per client would only be noise.
            options["ssl_show_warn"] = False
        return options

    def authorization(self) -> str | None:
        """The ``Authorization`` header value, for plain HTTP probes (None: no credentials)."""
        if self.api_key:
            key_id, sep, key = self.api_key.strip().partition(":")
            encoded = (
                base64.b64encode(f"{key_id}:{key}".encode()).decode()
                if sep
                else self.api_key.strip()
            )
            return f"ApiKey {encoded}"
        if self.username and self.password:
            pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return f"Basic {pair}"
        return None

    def ssl_context(self) -> ssl.SSLContext | None:
        """An SSL context for plain HTTPS probes (None: the default context is fine)."""
        if not self.verify_certs:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if self.ca_certs is not None:
            return ssl.create_default_context(cafile=str(self.ca_certs))
        return None


def es_client(url: str, settings: EsSecurity | None = None, **kwargs: Any) -> Elasticsearch:
    """An ``elasticsearch.Elasticsearch`` client for ``url`` with credentials and TLS applied.

    Parameters:
        url: the node, ``https://host:9200`` for a secured one; the nodes of a cluster
            comma-separated (the client spreads requests over them and moves off a node that
            stops answering).
        settings: credentials and trust; ``None`` reads them from the environment
            (:meth:`EsSecurity.from_env`).
        kwargs: further client options (``request_timeout``...); they win over ``settings``.

    Returns:
        The client; the caller closes it.

    Raises:
        EsSecurityError: the environment's settings are invalid, or ``url`` carries credentials
            (``https://user:secret@host``): URLs are printed in messages and logs.
    """
    from elasticsearch import Elasticsearch

    urls = [part.strip() for part in url.split(",") if part.strip()]
    for one in urls:
        parts = urllib.parse.urlsplit(one)
        if parts.username or parts.password:
            shown = f"{parts.scheme}://***@{parts.netloc.rpartition('@')[2]}"
            raise EsSecurityError(
                f"the Elasticsearch URL {shown} carries credentials; URLs are shown in "
                f"messages and logs, so set {ENV_ES_USERNAME} and {ENV_ES_PASSWORD} (or "
                f"{ENV_ES_API_KEY}) instead"
            )
    security = EsSecurity.from_env() if settings is None else settings
    options = security.client_options()
    if not url.lower().startswith("https://"):
        # TLS options mean nothing to a plain HTTP node; credentials still apply.
        options = {k: v for k, v in options.items() if k in ("api_key", "basic_auth")}
    hosts: str | list[str] = urls if len(urls) > 1 else url
    return Elasticsearch(hosts, **{**options, **kwargs})


def access_problem(error: BaseException, url: str | None = None) -> str | None:
    """A clear message when ``error`` is an authentication, authorization or TLS failure.

    Retrying cannot fix these: the credentials, the privileges or the trusted CA must change.
    The message says which, and never contains a credential (Elasticsearch's own reason names
    the user, never the password or key). Other errors give None.

    Parameters:
        error: what the ``elasticsearch`` client raised.
        url: the node, named in the message when given.
    """
    from elastic_transport import TlsError
    from elasticsearch import ApiError

    where = f"Elasticsearch at {url}" if url else "Elasticsearch"
    if isinstance(error, TlsError):
        return (
            f"TLS handshake with {where} failed: {_first_line(error)}; if the node's "
            f"certificate is signed by a private CA, point {ENV_ES_CA_CERTS} at that CA's PEM "
            f"file"
        )
    if isinstance(error, ApiError) and error.status_code == 401:
        return (
            f"{where} rejected the credentials (401: {_reason(error)}); check "
            f"{ENV_ES_API_KEY}, or {ENV_ES_USERNAME} and {ENV_ES_PASSWORD}"
        )
    if isinstance(error, ApiError) and error.status_code == 403:
        return (
            f"{where} denied the request (403: {_reason(error)}); the user or API key lacks "
            f"a privilege: give it the role in docs/SECURITY.md"
        )
    return None


def unreachable_cause(error: BaseException) -> str | None:
    """The cause in a few words when ``error`` means nothing answered (refused, unresolved
    host, timeout), None for anything else (an answer, a TLS failure).

    The client wraps the socket error two or three times (``ConnectionError`` caused by
    urllib3's ``NewConnectionError`` caused by ``ConnectionRefusedError``); the words come
    from the innermost.

    >>> unreachable_cause(ConnectionRefusedError(111, "Connection refused"))
    'connection refused'
    >>> unreachable_cause(ValueError("not a connection problem")) is None
    True
    """
    import socket

    chain: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending and len(chain) < 20:  # a cycle in a chain must not hang the caller
        current = pending.pop()
        if current in chain:
            continue
        chain.append(current)
        pending.extend(e for e in getattr(current, "errors", ()) if isinstance(e, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    names = {type(e).__name__ for e in chain}
    if "TlsError" in names or any(isinstance(e, ssl.SSLError) for e in chain):
        return None  # a TLS failure is an answer: access_problem explains it
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "host name not resolved"
    if any(isinstance(e, TimeoutError | socket.timeout) for e in chain) or (
        "ConnectionTimeout" in names
    ):
        return "no answer (timed out)"
    if any(isinstance(e, ConnectionError) for e in chain) or "ConnectionError" in names:
        return _first_line(chain[-1])
    return None


def wait_reachable(client: Any, url: str, *, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Return once Elasticsearch at ``url`` answers (any HTTP status), retrying for
    ``timeout_s`` seconds; raise :class:`EsUnreachableError` in one line otherwise.

    For commands that start against a node that may be a few seconds from up; an outage
    after the start is the caller's to handle (the processor pauses and retries).

    Parameters:
        client: an ``elasticsearch.Elasticsearch`` client for ``url``.
        url: the node, named in the message.
        timeout_s: how long to keep trying.
    """
    import time

    from elastic_transport import TransportError
    from elasticsearch import ApiError

    deadline = time.monotonic() + timeout_s
    delay = 0.25
    while True:
        try:
            # One attempt per call: the client's own retries would multiply the wait.
            client.options(max_retries=0, request_timeout=max(1.0, timeout_s)).info()
            return
        except ApiError:
            return  # an answer, even 401 or 503: reachable; the caller's request tells more
        except TransportError as error:
            cause = unreachable_cause(error)
            if cause is None:
                return  # TLS and the like: the caller's first request reports it
            if time.monotonic() + delay > deadline:
                raise EsUnreachableError(
                    f"Elasticsearch at {url} unreachable ({cause}) for {timeout_s:.0f} s since "
                    f"the start: is it running, and is HOPSCOPE_ES_URL right?"
                ) from None
        time.sleep(delay)
        delay = min(2 * delay, 1.0)


def _reason(error: Any) -> str:
    """Elasticsearch's reason, plus which other credentials failed (an API key is named by
    its id, never its secret part)."""
    body = getattr(error, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        reason = str(body["error"].get("reason", error.message))
        extra = body["error"].get("additional_unsuccessful_credentials")
        return f"{reason}; {extra}" if extra else reason
    return str(getattr(error, "message", error))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- least-privilege roles ------------------------------------------------------------------


def processor_role(index_prefix: str = DEFAULT_INDEX_PREFIX) -> dict[str, Any]:
    """The role a stream processor needs, for indices ``<index_prefix>-*``.

    Cluster ``manage_index_templates``: the processor installs its composable templates at
    start. On its indices: ``auto_configure`` (the first bulk write of the day creates the
    daily index, and new attributes add fields to its mapping) and ``index`` (bulk ``index``
    operations, which overwrite on replay). ``delete`` on the derived records' indices only:
    a trace derived again (a late span) deletes the records of its earlier derivation that the
    new one does not give; spans and logs are never deleted. Nothing to read or manage.
    Elasticsearch 8 still lets ``index`` update mappings, with a deprecation warning saying the
    next major release will not: ``auto_configure`` is that explicit privilege.
    """
    return {
        "cluster": ["manage_index_templates"],
        "indices": [
            {
                "names": [f"{index_prefix}-*"],
                "privileges": ["auto_configure", "index"],
            },
            {
                "names": [f"{index_prefix}-{kind}-*" for kind in DERIVED_KINDS],
                "privileges": ["delete"],
            },
        ],
    }


def reader_role(index_prefix: str = DEFAULT_INDEX_PREFIX) -> dict[str, Any]:
    """The role the analysis loaders need, for indices ``<index_prefix>-*``: read only.

    ``read`` covers field capabilities, point-in-time, sliced searches and counts;
    ``view_index_metadata`` lets Kibana and ``_field_caps`` see the mappings.
    """
    return {
        "cluster": [],
        "indices": [
            {
                "names": [f"{index_prefix}-*"],
                "privileges": ["read", "view_index_metadata"],
            }
        ],
    }
