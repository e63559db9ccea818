"""Ledger: the account balances in Postgres, through SQLAlchemy and psycopg.

``POST /debit``:

1. balance check on the read replica (``SELECT balance, version``); when the replica's row is
   older than the last version this process wrote (read-your-writes), the check is read again
   on the primary: a lagging replica moves reads to the primary;
2. on the primary, in one transaction: ``SELECT … FOR UPDATE`` on the account row, insert the
   entry, update the balance, commit.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from _common import parse_args, serve, setup_telemetry
from flask import Flask, jsonify, request
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy import create_engine, text

log = logging.getLogger("ledger")


def main() -> None:
    config, node = parse_args("ledger")
    setup_telemetry("ledger", node, config)
    pg = config["postgres"]

    def engine(role: str) -> Any:
        where = pg[role]
        url = f"postgresql+psycopg://{pg['user']}@{where['host']}:{where['port']}/{pg['dbname']}"
        return create_engine(url, pool_size=8, max_overflow=4, pool_pre_ping=False)

    primary, replica = engine("primary"), engine("replica")
    SQLAlchemyInstrumentor().instrument(engines=[primary, replica])
    written: dict[int, int] = {}
    written_lock = threading.Lock()
    app = Flask("ledger")
    FlaskInstrumentor().instrument_app(app)
    balance_sql = text("SELECT balance, version FROM accounts WHERE id = :id")

    @app.post("/debit")
    def debit() -> Any:
        body = request.get_json(force=True)
        account, amount = int(body["account"]), float(body["amount"])
        with replica.connect() as conn:
            row = conn.execute(balance_sql, {"id": account}).one()
        with written_lock:
            seen = written.get(account, 0)
        if row.version < seen:
            with primary.connect() as conn:
                row = conn.execute(balance_sql, {"id": account}).one()
        if row.balance < amount:
            return jsonify({"status": "declined"}), 402
        with primary.begin() as conn:
            conn.execute(
                text("SELECT balance FROM accounts WHERE id = :id FOR UPDATE"), {"id": account}
            ).one()
            conn.execute(
                text(
                    "INSERT INTO entries (account_id, payment_id, amount) "
                    "VALUES (:id, :payment, :amount)"
                ),
                {"id": account, "payment": body.get("payment_id", ""), "amount": amount},
            )
            version = conn.execute(
                text(
                    "UPDATE accounts SET balance = balance - :amount, version = version + 1 "
                    "WHERE id = :id RETURNING version"
                ),
                {"id": account, "amount": amount},
            ).scalar_one()
        with written_lock:
            written[account] = max(written.get(account, 0), int(version))
        return jsonify({"status": "debited", "version": int(version)})

    serve(app, int(config["ledger"]["port"]))


if __name__ == "__main__":
    main()
