"""Kafka client security settings: reading the environment, validation, kafka-python options,
and the password kept out of every repr, message and Kafka client log line."""

from __future__ import annotations

import doctest
import logging
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from kafka.errors import KafkaTimeoutError

from hopscope.core import kafka_security
from hopscope.core.errors import SettingsError
from hopscope.core.kafka_security import (
    ENV_SASL_MECHANISM,
    ENV_SASL_PASSWORD,
    ENV_SASL_USERNAME,
    ENV_SECURITY_PROTOCOL,
    ENV_SSL_CAFILE,
    ENV_SSL_CERTFILE,
    ENV_SSL_CHECK_HOSTNAME,
    ENV_SSL_KEYFILE,
    KafkaConnectError,
    KafkaSecurity,
    KafkaSecurityError,
    explained_connect_errors,
    kafka_client_options,
    mask_in_kafka_logs,
)

PASSWORD = "pw-Unit-7c1e"
passwords = st.text(st.characters(blacklist_categories=("Cs",)), min_size=6, max_size=40)


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def sasl_ssl_env(ca: Path, **changes: str) -> dict[str, str]:
    env = {
        ENV_SECURITY_PROTOCOL: "SASL_SSL",
        ENV_SASL_MECHANISM: "SCRAM-SHA-512",
        ENV_SASL_USERNAME: "alice",
        ENV_SASL_PASSWORD: PASSWORD,
        ENV_SSL_CAFILE: str(ca),
    }
    env.update(changes)
    return {key: value for key, value in env.items() if value != "<unset>"}


def test_nothing_set_means_plaintext_and_no_options() -> None:
    security = KafkaSecurity.from_env({})
    assert security == KafkaSecurity()
    assert security.client_options() == {}
    assert security.describe() == "PLAINTEXT"


def test_sasl_ssl_from_env_gives_every_kafka_python_option(ca: Path) -> None:
    security = KafkaSecurity.from_env(sasl_ssl_env(ca))
    assert security.client_options() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": PASSWORD,
        "ssl_check_hostname": True,
        "ssl_cafile": str(ca),
    }
    assert security.describe() == f"SASL_SSL, SCRAM-SHA-512 as user 'alice', CA {ca}"


def test_protocol_and_mechanism_are_case_insensitive_and_values_trimmed(ca: Path) -> None:
    env = sasl_ssl_env(
        ca, **{ENV_SECURITY_PROTOCOL: " sasl_ssl ", ENV_SASL_MECHANISM: "scram-sha-256"}
    )
    security = KafkaSecurity.from_env(env)
    assert (security.security_protocol, security.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")


def test_a_password_keeps_its_spaces(ca: Path) -> None:
    env = sasl_ssl_env(ca, **{ENV_SASL_PASSWORD: "  spaced out  "})
    assert KafkaSecurity.from_env(env).client_options()["sasl_plain_password"] == "  spaced out  "


def test_mutual_tls_options(ca: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("cert")
    key.write_text("key")
    env = {
        ENV_SECURITY_PROTOCOL: "SSL",
        ENV_SSL_CAFILE: str(ca),
        ENV_SSL_CERTFILE: str(cert),
        ENV_SSL_KEYFILE: str(key),
        ENV_SSL_CHECK_HOSTNAME: "false",
    }
    assert KafkaSecurity.from_env(env).client_options() == {
        "security_protocol": "SSL",
        "ssl_check_hostname": False,
        "ssl_cafile": str(ca),
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
    }


def test_sasl_plaintext_has_no_tls_options() -> None:
    env = {
        ENV_SECURITY_PROTOCOL: "SASL_PLAINTEXT",
        ENV_SASL_MECHANISM: "PLAIN",
        ENV_SASL_USERNAME: "bob",
        ENV_SASL_PASSWORD: PASSWORD,
    }
    options = KafkaSecurity.from_env(env).client_options()
    assert not any(key.startswith("ssl_") for key in options)
    assert options["sasl_mechanism"] == "PLAIN"


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({ENV_SECURITY_PROTOCOL: "TLS"}, [ENV_SECURITY_PROTOCOL, "'TLS'", "SASL_SSL"]),
        ({ENV_SASL_MECHANISM: "<unset>"}, [ENV_SASL_MECHANISM, "SCRAM-SHA-512"]),
        ({ENV_SASL_MECHANISM: "GSSAPI"}, [ENV_SASL_MECHANISM, "'GSSAPI'", "not supported"]),
        ({ENV_SASL_USERNAME: "<unset>"}, [ENV_SASL_USERNAME]),
        ({ENV_SASL_USERNAME: "  "}, [ENV_SASL_USERNAME]),
        ({ENV_SASL_PASSWORD: "<unset>"}, [ENV_SASL_PASSWORD, "'alice'"]),
        ({ENV_SSL_CAFILE: "/nonexistent/ca.pem"}, [ENV_SSL_CAFILE, "/nonexistent/ca.pem"]),
        ({ENV_SSL_KEYFILE: "/etc/hostname"}, [ENV_SSL_KEYFILE, ENV_SSL_CERTFILE]),
        ({ENV_SSL_CHECK_HOSTNAME: "maybe"}, [ENV_SSL_CHECK_HOSTNAME, "'maybe'"]),
        (
            {ENV_SECURITY_PROTOCOL: "PLAINTEXT", ENV_SSL_CAFILE: "<unset>"},
            [ENV_SASL_MECHANISM, ENV_SASL_USERNAME, ENV_SASL_PASSWORD, "does not use SASL"],
        ),
        (
            {ENV_SECURITY_PROTOCOL: "SASL_PLAINTEXT"},
            [ENV_SSL_CAFILE, "does not use TLS"],
        ),
    ],
)
def test_a_wrong_setting_is_an_error_naming_the_variable(
    ca: Path, changes: dict[str, str], names: list[str]
) -> None:
    with pytest.raises(KafkaSecurityError) as caught:
        KafkaSecurity.from_env(sasl_ssl_env(ca, **changes))
    message = str(caught.value)
    for name in names:
        assert name in message
    assert PASSWORD not in message
    assert isinstance(caught.value, SettingsError)


@given(password=passwords)
def test_repr_and_str_never_show_the_password(password: str) -> None:
    security = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-256", "alice", password)
    baseline = repr(KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-256", "alice", "x" * 6))
    assume(password not in baseline)
    assert password not in repr(security)
    assert password not in str(security)
    assert password not in security.describe()


@given(
    password=passwords,
    broken=st.sampled_from(
        [
            {ENV_SECURITY_PROTOCOL: "SASL"},
            {ENV_SECURITY_PROTOCOL: "PLAINTEXT"},
            {ENV_SECURITY_PROTOCOL: "SSL"},
            {ENV_SASL_MECHANISM: "OAUTHBEARER"},
            {ENV_SASL_MECHANISM: ""},
            {ENV_SASL_USERNAME: ""},
        ]
    ),
)
def test_errors_never_show_the_password(password: str, broken: dict[str, str]) -> None:
    """Stronger than "not in the message": the message does not depend on the password."""

    def error_with(secret: str) -> str:
        env = {
            ENV_SECURITY_PROTOCOL: "SASL_PLAINTEXT",
            ENV_SASL_MECHANISM: "SCRAM-SHA-512",
            ENV_SASL_USERNAME: "alice",
            ENV_SASL_PASSWORD: secret,
            **broken,
        }
        with pytest.raises(KafkaSecurityError) as caught:
            KafkaSecurity.from_env(env)
        return str(caught.value)

    assume(password.strip())
    assert error_with(password) == error_with("another-password")


def test_environment_options_come_first_and_explicit_ones_win(
    ca: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in sasl_ssl_env(ca).items():
        monkeypatch.setenv(key, value)
    options = kafka_client_options({"client_id": "gw-1", "ssl_check_hostname": False})
    assert options["sasl_plain_username"] == "alice"
    assert options["client_id"] == "gw-1"
    assert options["ssl_check_hostname"] is False


def test_no_environment_and_no_options_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (ENV_SECURITY_PROTOCOL, ENV_SASL_MECHANISM, ENV_SASL_USERNAME, ENV_SASL_PASSWORD):
        monkeypatch.delenv(key, raising=False)
    assert kafka_client_options() == {}


def test_kafka_debug_lines_that_could_carry_the_password_are_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """kafka-python dumps each request at DEBUG; a SASL/PLAIN handshake holds the password."""
    password = "plain-Secret-93f"
    mask_in_kafka_logs(password)
    auth_bytes = b"\x00alice\x00" + password.encode()
    request = f"SaslAuthenticateRequest(auth_bytes={auth_bytes!r})"
    with caplog.at_level(logging.DEBUG, logger="kafka"):
        logging.getLogger("kafka.net.connection").debug("Request %d: %s", 7, request)
        logging.getLogger("kafka.admin.client").debug("configuration: %s", {"pw": password})
    assert len(caplog.records) == 2
    for record in caplog.records:
        assert password not in record.getMessage()
        assert "[redacted]" in record.getMessage()


def test_a_failed_bootstrap_says_why_without_the_password() -> None:
    options = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": PASSWORD,
    }
    manager = logging.getLogger("kafka.net.manager")
    with pytest.raises(KafkaConnectError) as caught:  # noqa: SIM117 (the order is the point)
        with explained_connect_errors("127.0.0.1:9093", options, "the test consumer"):
            manager.warning(
                "Bootstrap connection to bootstrap-0 failed: [Error 58] "
                "SaslAuthenticationFailedError: Authentication failed during authentication due "
                "to invalid credentials with SASL mechanism SCRAM-SHA-512 (backoff 0.05 secs)"
            )
            raise KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:9093")
    message = str(caught.value)
    assert message.startswith("the test consumer could not connect to Kafka at 127.0.0.1:9093")
    assert "SaslAuthenticationFailedError" in message
    assert ENV_SASL_PASSWORD in message and "'alice'" in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    ("reason", "protocol", "hint"),
    [
        ("KafkaConnectionError: Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
         "verify failed", "SASL_SSL", ENV_SSL_CAFILE),
        ("KafkaConnectionError: socket disconnected", "PLAINTEXT", ENV_SECURITY_PROTOCOL),
        ("KafkaConnectionError: socket disconnected", "SSL", "expects SASL"),
        ("KafkaConnectionError: socket disconnected", "SASL_SSL", ENV_SASL_PASSWORD),
        ("InvalidReceiveError: Invalid frame length: 352518912", "PLAINTEXT", "TLS listener"),
        ("ConnectionRefusedError: [Errno 111] Connection refused", "PLAINTEXT", "running"),
    ],
)  # fmt: skip
def test_each_bootstrap_failure_gets_its_hint(reason: str, protocol: str, hint: str) -> None:
    with pytest.raises(KafkaConnectError, match=hint):  # noqa: SIM117
        with explained_connect_errors("h:1", {"security_protocol": protocol}, "a client"):
            logging.getLogger("kafka.net.manager").warning(
                "Bootstrap connection to bootstrap-0 failed: %s (backoff 0.10 secs)", reason
            )
            raise KafkaTimeoutError("Unable to bootstrap from h:1")


@pytest.mark.parametrize(
    ("protocol", "reasons", "cause", "hint"),
    [
        # A refused login is followed by a hang-up; some attempts see only the hang-up.
        ("SASL_SSL", ("KafkaConnectionError: socket disconnected",
                      "[Error 58] SaslAuthenticationFailedError: invalid credentials",
                      "KafkaConnectionError: socket disconnected"),
         "SaslAuthenticationFailedError", "refused the credentials"),
        # On a loaded machine the last attempt may time out; the earlier hang-ups tell why.
        ("SSL", ("KafkaConnectionError: socket disconnected",
                 "KafkaConnectionError: socket disconnected",
                 "KafkaTimeoutError: Timeout during ApiVersions check"),
         "socket disconnected", "expects SASL"),
    ],
)  # fmt: skip
def test_the_most_telling_of_several_failures_is_reported(
    protocol: str, reasons: tuple[str, ...], cause: str, hint: str
) -> None:
    manager = logging.getLogger("kafka.net.manager")
    with pytest.raises(KafkaConnectError, match=hint) as caught:  # noqa: SIM117
        with explained_connect_errors("h:1", {"security_protocol": protocol}, "a client"):
            for reason in reasons:
                manager.warning("Bootstrap attempt to b-0 failed: %s (backoff 1 secs)", reason)
            raise KafkaTimeoutError("Unable to bootstrap from h:1")
    assert cause in str(caught.value)


def test_other_errors_pass_through_unchanged() -> None:
    with pytest.raises(ValueError, match="not ours"):  # noqa: SIM117
        with explained_connect_errors("h:1", {}, "a client"):
            raise ValueError("not ours")


def test_module_examples() -> None:
    result = doctest.testmod(kafka_security)
    assert result.attempted > 0 and result.failed == 0


# -- the secured broker's configuration (hopscope.stack.kafka) -------------------------------


def test_sasl_ssl_overrides_secure_the_client_listener_only(tmp_path: Path) -> None:
    from hopscope.stack import kafka
    from hopscope.stack.certs import ServerCerts

    certs = ServerCerts(tmp_path / "ca.crt", tmp_path / "server.crt", tmp_path / "server.key")
    certs.ca.write_text("CA\n")
    certs.cert.write_text("CERT\n")
    certs.key.write_text("KEY\n")
    layout = kafka.KafkaLayout(tmp_path / "kafka")
    layout.root.mkdir()
    admin = kafka.ScramUser("admin", "pw-admin-1")
    listener = kafka.SaslSslListener(certs, admin, authorizer=True)
    props = kafka.sasl_ssl_overrides(layout, 19093, 19094, listener)
    text = kafka.server_properties(layout, 19093, 19094, props)
    parsed = dict(line.split("=", 1) for line in text.splitlines())
    assert parsed["listeners"] == "SASL_SSL://127.0.0.1:19093,CONTROLLER://127.0.0.1:19094"
    assert parsed["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert parsed["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert (
        'username="admin" password="pw-admin-1";'
        in parsed["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    )
    assert parsed["ssl.keystore.type"] == parsed["ssl.truststore.type"] == "PEM"
    assert parsed["ssl.truststore.location"] == str(certs.ca)
    assert parsed["super.users"].startswith("User:admin;")
    keystore = Path(parsed["ssl.keystore.location"])
    assert keystore.read_text() == "KEY\nCERT\n"  # key first, then the certificate chain
    assert keystore.stat().st_mode & 0o077 == 0


def test_scram_users_keep_their_password_out_of_repr_and_unsafe_values_out() -> None:
    from hopscope.stack import kafka
    from hopscope.stack.certs import ServerCerts

    user = kafka.ScramUser("alice", "pw-Alice-9")
    assert "pw-Alice-9" not in repr(user)
    with pytest.raises(ValueError, match="alice") as caught:
        kafka.ScramUser("alice", 'has "quotes", commas]')
    assert "quotes" not in str(caught.value)
    with pytest.raises(ValueError, match="mechanism"):
        kafka.SaslSslListener(ServerCerts(Path("a"), Path("b"), Path("c")), user, mechanism="PLAIN")


def test_process_command_refuses_inconsistent_settings_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from hopscope.cli import app

    # Nothing listens on port 9: the command must fail on the settings, not on a connection.
    monkeypatch.setenv("HOPSCOPE_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("HOPSCOPE_ES_URL", "http://127.0.0.1:9")
    monkeypatch.setenv(ENV_SECURITY_PROTOCOL, "SASL_SSL")
    monkeypatch.setenv(ENV_SASL_MECHANISM, "SCRAM-SHA-512")
    monkeypatch.setenv(ENV_SASL_PASSWORD, PASSWORD)
    monkeypatch.delenv(ENV_SASL_USERNAME, raising=False)
    result = CliRunner().invoke(app, ["process", "--drain"])
    assert result.exit_code == 1
    assert "KafkaSecurityError" in result.output and ENV_SASL_USERNAME in result.output
    assert PASSWORD not in result.output
