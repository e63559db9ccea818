"""Bank adapter: forwards a charge to the card issuer over HTTP (the stub issuer)."""

from __future__ import annotations

import logging
from typing import Any

import requests
from _common import parse_args, serve, setup_telemetry
from flask import Flask, jsonify, request
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor

log = logging.getLogger("bank")


def main() -> None:
    config, node = parse_args("bank")
    setup_telemetry("bank", node, config)
    RequestsInstrumentor().instrument()
    session = requests.Session()
    issuer = config["urls"]["issuer"]
    app = Flask("bank")
    FlaskInstrumentor().instrument_app(app)

    @app.post("/charge")
    def charge() -> Any:
        body = request.get_json(force=True)
        pan = str(body.get("card_number", ""))
        # The issuer's API takes the card number in the path, as some real ones do.
        answer = session.post(
            f"{issuer}/issuer/cards/{pan}/authorizations",
            json={"amount": body.get("amount"), "currency": "EUR"},
            timeout=2.5,
        )
        answer.raise_for_status()
        log.info("issuer approved payment %s for card %s", body.get("payment_id"), pan)
        return jsonify(answer.json())

    serve(app, int(config["bank"]["port"]))


if __name__ == "__main__":
    main()
