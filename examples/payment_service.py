"""A small payment service instrumented with hopscope: the README's "Instrument a payment service".

One incoming request (``POST /payments``) makes every kind of span the analysis reads:

- a SERVER span for the request (:func:`~hopscope.ingest.rpc_server`), continuing the caller's
  trace from its ``traceparent`` header;
- a lock wait on the account (:func:`~hopscope.ingest.lock_wait`): payments of one account are
  serialised, and the time spent waiting for that is coordination time;
- database calls to SQLite (:func:`~hopscope.ingest.db_call`; the statements' literals are
  stripped before they reach the span);
- a downstream call to the risk service (:func:`~hopscope.ingest.rpc_call`), which writes the
  W3C ``traceparent`` into the request headers, and the risk service's own SERVER span in its
  own process (service ``risk``), so the trace crosses two services as in production;
- log lines through the stdlib ``logging`` module, exported with the trace and span ids of the
  span they were written in; the card number in them is masked before it leaves the process.

Run it (Kafka from ``HOPSCOPE_KAFKA_BOOTSTRAP``, e.g. after ``eval "$(hopscope stack env)"``)::

    python examples/payment_service.py --port 8080
    curl -s -X POST localhost:8080/payments \\
        -d '{"account": "acc-1", "amount_cents": 1250, "card": "4111 1111 1111 1111"}'

Unless ``--risk-url`` names a risk service, the example starts one itself: this same file run
with ``--serve risk`` in a child process, so it runs alone. It prints ``listening on
http://127.0.0.1:PORT`` and stops on SIGTERM or Ctrl-C, flushing its telemetry first (and
stopping its risk child). Needs only ``hopscope-ingest``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import urllib.request
import uuid
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from hopscope.ingest import configure, db_call, lock_wait, rpc_call, rpc_server

SERVICE = "payment-service"
log = logging.getLogger("payments")

# One lock per account: two payments of the same account must not both read the old balance.
_account_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def account_lock(account: str) -> threading.Lock:
    """The lock of ``account`` (created on first use)."""
    with _locks_guard:
        return _account_locks[account]


def create_database(path: Path) -> None:
    """The accounts table, with a balance for the accounts the README's request uses."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, balance_cents INTEGER)"
        )
        db.executemany(
            "INSERT OR IGNORE INTO accounts VALUES (?, ?)",
            [("acc-1", 100_000), ("acc-2", 5_000)],
        )


class JsonHandler(BaseHTTPRequestHandler):
    """One JSON ``POST`` route per service; subclasses answer it in :meth:`answer`."""

    route = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # The span helpers read the W3C trace context from lower-case header names.
        headers = {name.lower(): value for name, value in self.headers.items()}
        if self.path == self.route:
            status, answer = self.answer(json.loads(body or b"{}"), headers)
        else:
            status, answer = 404, {"error": f"no route {self.path}"}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def answer(
        self, request: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer to ``request``."""
        raise NotImplementedError

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr: the spans already record every request."""


class PaymentHandler(JsonHandler):
    """``POST /payments``: the payment service."""

    route = "/payments"
    # Set on the class by main(): where the database is and where the risk service answers.
    db_path: Path
    risk_url: str

    def answer(
        self, request: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """Authorise one payment: risk score, then debit the account under its lock."""
        payment_id = str(uuid.uuid4())
        account = str(request.get("account", "acc-1"))
        amount = int(request.get("amount_cents", 0))
        with rpc_server(SERVICE, "Pay", headers=headers, rpc_system="http",
                        attributes={"payment.id": payment_id}):  # fmt: skip
            # Logged with the card number on purpose: the exporter masks it to first 6 and last 4
            # digits ("4111 11** **** 1111") before the record leaves the process.
            log.info("payment %s for card %s", payment_id, request.get("card", "-"),
                     extra={"payment.id": payment_id})  # fmt: skip
            score = self.risk_score(payment_id)
            lock = account_lock(account)
            # The span covers the wait only, not the work done while holding the lock.
            with lock_wait(f"account:{account}"):
                lock.acquire()
            try:
                approved = self.debit(account, amount)
            finally:
                lock.release()
            status = "approved" if approved else "declined"
            log.info("payment %s %s", payment_id, status, extra={"payment.id": payment_id})
        return 200, {"payment_id": payment_id, "status": status, "risk_score": score}

    def risk_score(self, payment_id: str) -> int:
        """Ask the risk service; ``rpc_call`` puts ``traceparent`` into the request headers."""
        headers = {"Content-Type": "application/json"}
        with rpc_call("risk", "risk-1", "Score", rpc_system="http", headers=headers):
            data = json.dumps({"payment_id": payment_id}).encode()
            # The URL is an http(s) one: main() checks --risk-url.
            request = urllib.request.Request(self.risk_url, data=data, headers=headers)  # noqa: S310
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return int(json.load(response)["score"])

    def debit(self, account: str, amount: int) -> bool:
        """Debit ``amount`` when the balance allows it; two statements, two database spans."""
        with sqlite3.connect(self.db_path) as db:
            select = "SELECT balance_cents FROM accounts WHERE id = ?"
            with db_call("sqlite", "SELECT", select, namespace="payments", node="payments-db"):
                row = db.execute(select, (account,)).fetchone()
            if row is None or row[0] < amount:
                return False
            update = "UPDATE accounts SET balance_cents = balance_cents - ? WHERE id = ?"
            with db_call("sqlite", "UPDATE", update, namespace="payments", node="payments-db"):
                db.execute(update, (amount, account))
        return True


class RiskHandler(JsonHandler):
    """``POST /risk/score``: the risk service, the payment service's downstream."""

    route = "/risk/score"

    def answer(
        self, request: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """A SERVER span continuing the caller's trace from the request's ``traceparent``."""
        with rpc_server("risk", "Score", headers=headers, rpc_system="http"):
            log.info("scored payment %s", request.get("payment_id"))
            return 200, {"score": 12}


def start_risk_child() -> tuple[subprocess.Popen[str], str]:
    """Run this file with ``--serve risk`` on a free port; return the process and its URL."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "risk", "--node", "risk-1", "--port", "0"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    line = child.stdout.readline()  # "listening on http://127.0.0.1:PORT"
    if not line.startswith("listening on "):
        child.kill()
        raise SystemExit(f"the risk service did not start (exit {child.wait()})")
    return child, line.removeprefix("listening on ").strip() + RiskHandler.route


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C, then flush the telemetry and exit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--node", default="pay-1", help="service.instance.id of this process")
    parser.add_argument("--risk-url", help="the risk service (default: start one as a child)")
    parser.add_argument("--db", type=Path, help="SQLite file (default: a temporary one)")
    parser.add_argument(
        "--serve",
        choices=("payment", "risk"),
        default="payment",
        help="which service this process is (the risk one is the downstream)",
    )
    args = parser.parse_args(argv)
    if args.risk_url is not None and not args.risk_url.startswith(("http://", "https://")):
        parser.error(f"--risk-url must be an http:// or https:// URL, got {args.risk_url!r}")

    risk = args.serve == "risk"
    # Kafka from HOPSCOPE_KAFKA_BOOTSTRAP; also bridges stdlib logging (INFO and up) to Kafka.
    telemetry = configure("risk" if risk else SERVICE, args.node)
    child: subprocess.Popen[str] | None = None
    with tempfile.TemporaryDirectory(prefix="payment-service-") as scratch:
        handler: type[JsonHandler] = RiskHandler
        if not risk:
            handler = PaymentHandler
            PaymentHandler.db_path = args.db or Path(scratch) / "payments.db"
            create_database(PaymentHandler.db_path)
            PaymentHandler.risk_url = args.risk_url
            if args.risk_url is None:
                child, PaymentHandler.risk_url = start_risk_child()
        server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
        port = server.server_address[1]

        def stop(_signum: int, _frame: FrameType | None) -> None:
            # shutdown() waits for serve_forever() to return, which runs in this very thread:
            # ask from another one.
            threading.Thread(target=server.shutdown).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print(f"listening on http://127.0.0.1:{port}", flush=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
            if child is not None:
                child.terminate()  # it flushes its own telemetry on SIGTERM
                child.wait(timeout=60)
                if child.stdout is not None:
                    child.stdout.close()
            # Bounded even when Kafka is down; what could not be sent is counted.
            telemetry.shutdown(20)
    print(f"stopped; telemetry: {telemetry.stats()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
