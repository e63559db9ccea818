"""The lab's parts that need no service: its endpoint map as the processors read it, the TCP
proxy's latency (real sockets on loopback), the fault catalogue, missing-tool messages and the
`hopscope lab` commands' argument errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hopscope.cli import app
from hopscope.lab import FAULTS, LabError, MissingToolError, make_fault
from hopscope.lab._infra import tool
from hopscope.lab._lab import endpoint_map, user_config
from hopscope.lab.proxy import Proxy
from hopscope.processors.derive.semconv import rules_from_document

CONFIG = {
    "postgres": {"primary": {"port": 5501}, "replica": {"port": 5502}},
    "redis": {"port": 6390},
    "payment_nodes": [{"node": "payment-1", "port": 8101}, {"node": "payment-2", "port": 8102}],
    "risk": {"port": 8201},
    "ledger": {"port": 8202},
    "issuer": {"port": 8203},
    "proxies": {"bank": {"port": 8204}},
}


def test_endpoint_map_is_what_the_processors_read() -> None:
    rules = rules_from_document(tomllib.loads(endpoint_map(CONFIG)))
    by_port = {e.port: e for e in rules.endpoints}
    assert by_port[5501].db_role == "primary" and by_port[5502].db_role == "replica"
    assert by_port[8102].node == "payment-2" and by_port[8102].service == "payment"
    assert by_port[6390].cache == "risk-rules"
    assert by_port[8204].service == "bank"  # the bank adapter is reached through the proxy


def test_the_users_semconv_and_process_tables_reach_the_labs_processors(tmp_path: Path) -> None:
    user = tmp_path / "hopscope.toml"
    user.write_text(
        '[[semconv.statements]]\nkind = "lock_wait"\npattern = "pg_sleep\\\\("\n\n'
        '[[semconv.endpoints]]\naddress = "10.0.0.9"\nport = 5432\nservice = "billing-db"\n\n'
        "[process]\ntrace_idle = 3.0\n",
        encoding="utf-8",
    )
    document = tomllib.loads(endpoint_map(CONFIG, user_config(user)))
    rules = rules_from_document(document)
    # The lab's endpoints first (the first match wins), the user's after them.
    assert rules.endpoints[0].port == 5501
    assert (rules.endpoints[-1].address, rules.endpoints[-1].service) == ("10.0.0.9", "billing-db")
    assert rules.statements[0].pattern == "pg_sleep\\("
    assert document["process"] == {"trace_idle": 3.0}
    assert endpoint_map(CONFIG) == endpoint_map(CONFIG, {})


@contextlib.contextmanager
def _server(prefix: bytes = b"") -> Iterator[int]:
    """A TCP server on loopback answering each connection's requests with ``prefix`` + the
    request; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while request := conn.recv(1024):
                conn.sendall(prefix + request)

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.fixture
def echo_port() -> Iterator[int]:
    with _server() as port:
        yield port


@contextlib.contextmanager
def _running(proxy: Proxy) -> Iterator[int]:
    """``proxy`` serving on a loopback port (yielded) in a thread of its own."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(proxy.handle, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    watcher = loop.create_task(proxy.watch())
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        yield port
    finally:

        async def close() -> None:
            watcher.cancel()
            server.close()
            for writers in list(proxy.open):  # sessions the test left open
                for writer in writers:
                    writer.close()
            await server.wait_closed()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _round_trip(port: int) -> float:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"ping")
        assert conn.recv(16) == b"ping"
    return time.monotonic() - began


def test_proxy_relays_and_delays_requests(echo_port: int, tmp_path: Path) -> None:
    control = tmp_path / "control.json"
    with _running(Proxy(echo_port, control)) as port:
        assert _round_trip(port) < 0.15
        control.write_text(json.dumps({"latency_ms": 300}))
        time.sleep(0.5)  # the control file is re-read every 0.2 s
        assert _round_trip(port) >= 0.3


def test_proxy_moves_to_a_new_target_and_closes_the_open_sessions(tmp_path: Path) -> None:
    """The switchover fault's address move: new connections reach the new server, a session
    opened before the move is closed (its server is the old one)."""
    control = tmp_path / "control.json"
    with _server(b"old:") as old, _server(b"new:") as new, _running(Proxy(old, control)) as port:
        before = socket.create_connection(("127.0.0.1", port), timeout=5)
        with before:
            before.sendall(b"ping")
            assert before.recv(16) == b"old:ping"
            control.write_text(json.dumps({"target_port": new}))
            time.sleep(0.5)  # the control file is re-read every 0.2 s
            assert before.recv(16) == b""  # closed by the proxy
        with socket.create_connection(("127.0.0.1", port), timeout=5) as after:
            after.sendall(b"ping")
            assert after.recv(16) == b"new:ping"


def test_every_fault_has_ground_truth_fields() -> None:
    for name in FAULTS:
        truth = make_fault(name).ground_truth()
        assert truth["fault"] == name and set(truth["where"]) == {"service", "node", "resource"}
    with pytest.raises(LabError, match="unknown fault"):
        make_fault("meteor")


def test_missing_tool_names_the_install_command() -> None:
    with pytest.raises(MissingToolError, match="apt-get install -y some-package"):
        tool("surely-not-installed-hopscope", "some-package")


def test_lab_commands_argument_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["lab", "down", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1 and "LabNotRunningError" in result.output
    result = runner.invoke(app, ["lab", "run", "--fault", "meteor", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--fault" in result.output
