"""Kafka client security (TLS, SASL) from ``HOPSCOPE_KAFKA_*`` environment variables.

Every Kafka client hopscope creates — the SDK's producer, the simulator's, the processors'
consumer and dead-letter producer — takes the same kafka-python keyword arguments from
:meth:`KafkaSecurity.client_options`::

    HOPSCOPE_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
    HOPSCOPE_KAFKA_SASL_MECHANISM      PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*)
    HOPSCOPE_KAFKA_SASL_USERNAME       (with SASL_*)
    HOPSCOPE_KAFKA_SASL_PASSWORD       (with SASL_*; never logged, never in repr or errors)
    HOPSCOPE_KAFKA_SSL_CAFILE          PEM file of the CA that signed the brokers' certificates
                                       (default: the system's trust store)
    HOPSCOPE_KAFKA_SSL_CERTFILE        client certificate (PEM), for mutual TLS
    HOPSCOPE_KAFKA_SSL_KEYFILE         its private key (PEM), when not in the certificate file
    HOPSCOPE_KAFKA_SSL_CHECK_HOSTNAME  true (default) or false

A setting that contradicts another (a SASL user with ``PLAINTEXT``, a key without a
certificate) is an error rather than something silently ignored: security that is configured
but not in force is the failure worth stopping for. Errors::

    HopscopeError
    ├── SettingsError
    │   └── KafkaSecurityError   a HOPSCOPE_KAFKA_* security variable is missing or malformed
    └── KafkaConnectError        a client could not bootstrap (refused, TLS, authentication)

The password goes to kafka-python and nowhere else: it is kept out of ``repr``, out of every
message here, and is masked in the Kafka client's own debug log lines that could carry it (the
request dump of a SASL/PLAIN handshake, the admin client's configuration dump).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hopscope.core.errors import HopscopeError, SettingsError

ENV_SECURITY_PROTOCOL = "HOPSCOPE_KAFKA_SECURITY_PROTOCOL"
ENV_SASL_MECHANISM = "HOPSCOPE_KAFKA_SASL_MECHANISM"
ENV_SASL_USERNAME = "HOPSCOPE_KAFKA_SASL_USERNAME"
ENV_SASL_PASSWORD = "HOPSCOPE_KAFKA_SASL_PASSWORD"  # noqa: S105 (a variable name, not a secret)
ENV_SSL_CAFILE = "HOPSCOPE_KAFKA_SSL_CAFILE"
ENV_SSL_CERTFILE = "HOPSCOPE_KAFKA_SSL_CERTFILE"
ENV_SSL_KEYFILE = "HOPSCOPE_KAFKA_SSL_KEYFILE"
ENV_SSL_CHECK_HOSTNAME = "HOPSCOPE_KAFKA_SSL_CHECK_HOSTNAME"

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class KafkaSecurityError(SettingsError):
    """A ``HOPSCOPE_KAFKA_*`` security variable is missing, malformed or contradicts another.

    The message names the variables; it never contains the password.
    """


class KafkaConnectError(HopscopeError):
    """A Kafka client could not bootstrap: nothing listening, TLS failure, or the broker
    refused the credentials. The message says which, when the client told."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How hopscope's Kafka clients authenticate and encrypt; the default is ``PLAINTEXT``.

    Validated on construction (:class:`KafkaSecurityError`); ``repr`` and ``str`` never show
    the password.

    >>> s = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "alice", "s3cret")
    >>> "s3cret" in repr(s)
    False
    >>> s.describe()
    "SASL_SSL, SCRAM-SHA-512 as user 'alice', system trust store"
    >>> sorted(KafkaSecurity().client_options())
    []
    """

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        protocol = self.security_protocol
        if protocol not in PROTOCOLS:
            raise KafkaSecurityError(
                f"{ENV_SECURITY_PROTOCOL}={protocol!r} is not one of {', '.join(PROTOCOLS)}"
            )
        if self.uses_sasl:
            self._check_sasl()
        else:
            given = [
                name
                for name, value in (
                    (ENV_SASL_MECHANISM, self.sasl_mechanism),
                    (ENV_SASL_USERNAME, self.sasl_username),
                    (ENV_SASL_PASSWORD, self.sasl_password),
                )
                if value
            ]
            if given:
                raise KafkaSecurityError(
                    f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} set, but "
                    f"{ENV_SECURITY_PROTOCOL}={protocol} does not use SASL: set it to SASL_SSL "
                    f"(or SASL_PLAINTEXT), or unset {' and '.join(given)}"
                )
        files = (
            (ENV_SSL_CAFILE, self.ssl_cafile),
            (ENV_SSL_CERTFILE, self.ssl_certfile),
            (ENV_SSL_KEYFILE, self.ssl_keyfile),
        )
        if not self.uses_tls:
            given = [name for name, value in files if value is not None]
            if given:
                raise KafkaSecurityError(
                    f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} set, but "
                    f"{ENV_SECURITY_PROTOCOL}={protocol} does not use TLS: set it to SSL or "
                    f"SASL_SSL, or unset {' and '.join(given)}"
                )
            return
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise KafkaSecurityError(
                f"{ENV_SSL_KEYFILE} is set without {ENV_SSL_CERTFILE}: mutual TLS needs the "
                f"client certificate too"
            )
        for name, path in files:
            if path is not None and not path.is_file():
                raise KafkaSecurityError(f"{name}={path}: no such file")

    def _check_sasl(self) -> None:
        protocol = self.security_protocol
        if not self.sasl_mechanism:
            raise KafkaSecurityError(
                f"{ENV_SECURITY_PROTOCOL}={protocol} needs {ENV_SASL_MECHANISM} "
                f"(one of {', '.join(MECHANISMS)})"
            )
        if self.sasl_mechanism not in MECHANISMS:
            raise KafkaSecurityError(
                f"{ENV_SASL_MECHANISM}={self.sasl_mechanism!r} is not supported: use one of "
                f"{', '.join(MECHANISMS)}"
            )
        if not self.sasl_username:
            raise KafkaSecurityError(
                f"{ENV_SECURITY_PROTOCOL}={protocol} needs a user name: set {ENV_SASL_USERNAME}"
            )
        if not self.sasl_password:
            raise KafkaSecurityError(
                f"{ENV_SECURITY_PROTOCOL}={protocol} needs the password of user "
                f"{self.sasl_username!r}: set {ENV_SASL_PASSWORD}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """Read the ``HOPSCOPE_KAFKA_*`` security variables (``os.environ`` by default).

        Empty variables count as unset; protocol and mechanism are case-insensitive.

        >>> KafkaSecurity.from_env({}).security_protocol
        'PLAINTEXT'
        >>> try:
        ...     KafkaSecurity.from_env({"HOPSCOPE_KAFKA_SECURITY_PROTOCOL": "tls"})
        ... except KafkaSecurityError as error:
        ...     print(error)  # doctest: +ELLIPSIS
        HOPSCOPE_KAFKA_SECURITY_PROTOCOL='TLS' is not one of PLAINTEXT, SSL, ...
        """
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            return env.get(name, "").strip() or None

        def path(name: str) -> Path | None:
            value = text(name)
            return Path(value).expanduser() if value else None

        check_hostname = True
        if (raw := text(ENV_SSL_CHECK_HOSTNAME)) is not None:
            if raw.lower() not in _TRUE | _FALSE:
                raise KafkaSecurityError(
                    f"{ENV_SSL_CHECK_HOSTNAME}={raw!r}: expected true or false"
                )
            check_hostname = raw.lower() in _TRUE
        mechanism = text(ENV_SASL_MECHANISM)
        return cls(
            security_protocol=(text(ENV_SECURITY_PROTOCOL) or "PLAINTEXT").upper(),
            sasl_mechanism=mechanism.upper() if mechanism else None,
            sasl_username=text(ENV_SASL_USERNAME),
            # Not stripped: surrounding spaces may be part of a password.
            sasl_password=env.get(ENV_SASL_PASSWORD) or None,
            ssl_cafile=path(ENV_SSL_CAFILE),
            ssl_certfile=path(ENV_SSL_CERTFILE),
            ssl_keyfile=path(ENV_SSL_KEYFILE),
            ssl_check_hostname=check_hostname,
        )

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in _SASL_PROTOCOLS

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in _TLS_PROTOCOLS

    def describe(self) -> str:
        """A one-line summary for messages and logs, without the password."""
        return describe_options(self._options())

    def client_options(self) -> dict[str, Any]:
        """kafka-python keyword arguments for ``KafkaProducer``, ``KafkaConsumer`` and
        ``KafkaAdminClient``; empty for ``PLAINTEXT`` (the clients' defaults).

        The result holds the password: hand it to the client, never to a log. The password is
        also registered with the masking of the Kafka client's debug log lines.

        >>> KafkaSecurity("SSL", ssl_check_hostname=False).client_options()
        {'security_protocol': 'SSL', 'ssl_check_hostname': False}
        """
        if self.uses_sasl and self.sasl_password:
            mask_in_kafka_logs(self.sasl_password)
        return self._options()

    def _options(self) -> dict[str, Any]:
        if self.security_protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_sasl:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        if self.uses_tls:
            options["ssl_check_hostname"] = self.ssl_check_hostname
            for key, path in (
                ("ssl_cafile", self.ssl_cafile),
                ("ssl_certfile", self.ssl_certfile),
                ("ssl_keyfile", self.ssl_keyfile),
            ):
                if path is not None:
                    options[key] = str(path)
        return options


def kafka_client_options(explicit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The environment's security options with ``explicit`` kafka-python options on top.

    What every client hopscope creates is given when its caller passed no options of its own;
    raises :class:`KafkaSecurityError` when the variables are inconsistent.
    """
    return {**KafkaSecurity.from_env().client_options(), **(explicit or {})}


def describe_options(options: Mapping[str, Any]) -> str:
    """How kafka-python ``options`` connect, in words, without the password.

    >>> describe_options({})
    'PLAINTEXT'
    >>> describe_options({"security_protocol": "SSL", "ssl_cafile": "/etc/ca.pem"})
    'SSL, CA /etc/ca.pem'
    """
    protocol = str(options.get("security_protocol", "PLAINTEXT"))
    parts = [protocol]
    if protocol in _SASL_PROTOCOLS:
        parts.append(
            f"{options.get('sasl_mechanism')} as user {options.get('sasl_plain_username')!r}"
        )
    if protocol in _TLS_PROTOCOLS:
        cafile = options.get("ssl_cafile")
        parts.append(f"CA {cafile}" if cafile else "system trust store")
        if options.get("ssl_certfile"):
            parts.append(f"client certificate {options['ssl_certfile']}")
        if options.get("ssl_check_hostname") is False:
            parts.append("host name not checked")
    return ", ".join(parts)


# -- keeping the password out of the Kafka client's logs ------------------------------------

# kafka-python loggers whose DEBUG lines can carry a password: the request dump (the SASL/PLAIN
# handshake bytes hold user and password) and the admin client's configuration dump. A filter
# on a logger sees the records that logger creates, which is all these lines.
_MASKED_LOGGERS = ("kafka.net.connection", "kafka.conn", "kafka.admin.client")
_MASK = "[redacted]"


class _MaskSecrets(logging.Filter):
    """Replaces registered secrets (as text and as they appear in a bytes repr) in records."""

    def __init__(self) -> None:
        super().__init__()
        self._patterns: re.Pattern[str] | None = None
        self._forms: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        forms = {secret, repr(secret)[1:-1], repr(secret.encode())[2:-1]}
        with self._lock:
            self._forms |= {form for form in forms if form}
            ordered = sorted(self._forms, key=len, reverse=True)
            self._patterns = re.compile("|".join(re.escape(form) for form in ordered))

    def mask(self, text: str) -> str:
        pattern = self._patterns
        return pattern.sub(_MASK, text) if pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._patterns is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it; a filter must not raise
            return True
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_masker = _MaskSecrets()
_masker_installed = False


def mask_in_kafka_logs(secret: str) -> None:
    """Mask ``secret`` in the debug lines of the Kafka client that could carry it."""
    global _masker_installed
    _masker.add(secret)
    if not _masker_installed:
        for name in _MASKED_LOGGERS:
            logging.getLogger(name).addFilter(_masker)
        _masker_installed = True


# -- explaining a failed bootstrap -----------------------------------------------------------

_FAILURE = re.compile(
    r"Bootstrap (?:connection|attempt) to \S+ failed: (?P<reason>.*?)(?: \(backoff|$)"
)


# Causes ranked by what they say about the listener, when attempts failed differently: a named
# refusal first, then a hang-up (the listener rejected what it read), then anything else (a
# timeout on a loaded machine says nothing about the listener).
_TELLING = re.compile(r"sasl|certificate|ssl|handshake|refused|frame length", re.IGNORECASE)
_HUNG_UP = re.compile(r"disconnected", re.IGNORECASE)


class _Failures(logging.Handler):
    """Keeps the bootstrap failures the Kafka client logged (it raises only a timeout)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a logging handler never raises
            if match := _FAILURE.search(record.getMessage()):
                self.reasons.append(match.group("reason"))

    def best(self) -> str | None:
        """The most telling cause: the broker hangs up right after refusing a login, so an
        attempt may see only the disconnect while another got to read the refusal, and a
        disconnect says more than an attempt that timed out."""
        telling = [reason for reason in self.reasons if _TELLING.search(reason)]
        hung_up = [reason for reason in self.reasons if _HUNG_UP.search(reason)]
        candidates = telling or hung_up or self.reasons
        return candidates[-1] if candidates else None


def _hint(reason: str, protocol: str) -> str:
    lowered = reason.lower()
    if "saslauthenticationfailed" in lowered or "invalid credentials" in lowered:
        return (
            f"the broker refused the credentials: check {ENV_SASL_USERNAME}, "
            f"{ENV_SASL_PASSWORD} and {ENV_SASL_MECHANISM}"
        )
    if "unsupportedsaslmechanism" in lowered:
        return f"the broker does not offer this mechanism: check {ENV_SASL_MECHANISM}"
    if "certificate verify failed" in lowered or "certificate_verify_failed" in lowered:
        return (
            f"the broker's certificate is not trusted: {ENV_SSL_CAFILE} must name the CA that "
            f"signed it (and the certificate must be valid for the bootstrap host)"
        )
    if "ssl" in lowered or "handshake" in lowered:
        return (
            f"the TLS handshake failed: does the listener speak TLS? check {ENV_SECURITY_PROTOCOL}"
        )
    if "invalid frame length" in lowered and protocol not in _TLS_PROTOCOLS:
        # A TLS record read as a Kafka frame: 0x15030300 is a TLS 1.2 alert, for instance.
        return (
            f"the broker did not answer in plain Kafka, as a TLS listener does: set "
            f"{ENV_SECURITY_PROTOCOL} to SSL or SASL_SSL and the matching variables"
        )
    if "refused" in lowered:
        return "nothing accepts connections there: is the broker running, is the address right?"
    if "disconnected" in lowered and protocol in _SASL_PROTOCOLS:
        return (
            f"the broker hung up during the login, which is how it refuses credentials (the "
            f"client does not always get to read the refusal): check {ENV_SASL_USERNAME}, "
            f"{ENV_SASL_PASSWORD} and {ENV_SASL_MECHANISM}, then whether the listener expects "
            f"{ENV_SECURITY_PROTOCOL}={protocol}"
        )
    if "disconnected" in lowered and protocol not in _TLS_PROTOCOLS:
        return (
            f"the broker closed the connection: its listener probably expects TLS and/or SASL; "
            f"set {ENV_SECURITY_PROTOCOL} (e.g. SASL_SSL) and the matching variables"
        )
    if "disconnected" in lowered and protocol not in _SASL_PROTOCOLS:
        return (
            f"the broker closed the connection: its listener probably expects SASL; set "
            f"{ENV_SECURITY_PROTOCOL}=SASL_SSL and the {ENV_SASL_MECHANISM}, "
            f"{ENV_SASL_USERNAME} and {ENV_SASL_PASSWORD} variables"
        )
    return "check the address and the HOPSCOPE_KAFKA_* security settings"


@contextlib.contextmanager
def explained_connect_errors(
    bootstrap: str, options: Mapping[str, Any], what: str
) -> Iterator[None]:
    """Turn a Kafka client's failed bootstrap inside the block into :class:`KafkaConnectError`.

    kafka-python retries a failing bootstrap until its ``bootstrap_timeout_ms`` and then says
    only "Unable to bootstrap"; the cause (refused credentials, an untrusted certificate) is in
    its log. This keeps the last cause it logged and raises it with a hint, masking the
    password should it ever appear there.

    Parameters
    ----------
    bootstrap:
        The servers the client was given (for the message).
    options:
        The security options the client was given (described without the password).
    what:
        Which client, e.g. ``"the processor's consumer"``.
    """
    from kafka.errors import KafkaTimeoutError

    password = options.get("sasl_plain_password")
    if password:
        # Options built by hand never went through client_options(): mask here too.
        mask_in_kafka_logs(str(password))
    recorder = _Failures()
    kafka_logger = logging.getLogger("kafka")
    kafka_logger.addHandler(recorder)
    try:
        yield
    except KafkaTimeoutError as error:
        reason = recorder.best() or f"{type(error).__name__}: {error}"
        if password:
            reason = reason.replace(str(password), _MASK)
        protocol = str(options.get("security_protocol", "PLAINTEXT"))
        raise KafkaConnectError(
            f"{what} could not connect to Kafka at {bootstrap} ({describe_options(options)}): "
            f"{reason}; {_hint(reason, protocol)}"
        ) from None
    finally:
        kafka_logger.removeHandler(recorder)
