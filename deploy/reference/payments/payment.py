"""Payment node: authorizes one payment by calling risk, the ledger and the bank adapter.

``POST /authorize``: risk score (``/score``), then the ledger's debit (``/debit``), then the
bank adapter (``/charge``). A failing dependency makes the answer a 502, which the gateway
treats as a failed attempt.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from _common import parse_args, serve, setup_telemetry
from flask import Flask, jsonify, request
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor

log = logging.getLogger("payment")


def main() -> None:
    config, node = parse_args("payment")
    port = next(n["port"] for n in config["payment_nodes"] if n["node"] == node)
    setup_telemetry("payment", node, config)
    RequestsInstrumentor().instrument()
    urls = config["urls"]
    session = requests.Session()
    app = Flask("payment")
    FlaskInstrumentor().instrument_app(app)

    @app.post("/authorize")
    def authorize() -> Any:
        body = request.get_json(force=True)
        try:
            risk = session.post(f"{urls['risk']}/score", json=body, timeout=2.0)
            risk.raise_for_status()
            if risk.json()["decision"] != "allow":
                return jsonify({"status": "declined", "reason": "risk"}), 402
            debit = session.post(f"{urls['ledger']}/debit", json=body, timeout=3.0)
            if debit.status_code == 402:
                return jsonify({"status": "declined", "reason": "funds"}), 402
            debit.raise_for_status()
            bank = session.post(f"{urls['bank']}/charge", json=body, timeout=3.0)
            bank.raise_for_status()
        except requests.RequestException as error:
            log.error("payment %s: dependency failed: %s", body.get("payment_id"), error)
            return jsonify({"status": "error", "reason": type(error).__name__}), 502
        return jsonify({"status": "approved", "node": node, **bank.json()}), 200

    serve(app, port)


if __name__ == "__main__":
    main()
