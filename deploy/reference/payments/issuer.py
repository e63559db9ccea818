"""Stub card issuer: approves every authorization after a short, jittered delay."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from _common import parse_args, serve, setup_telemetry
from flask import Flask, jsonify, request
from opentelemetry.instrumentation.flask import FlaskInstrumentor


def main() -> None:
    config, node = parse_args("issuer")
    setup_telemetry("issuer", node, config)
    app = Flask("issuer")
    FlaskInstrumentor().instrument_app(app)

    @app.post("/issuer/cards/<pan>/authorizations")
    def authorize(pan: str) -> Any:
        request.get_json(force=True)
        time.sleep(random.uniform(0.010, 0.025))  # noqa: S311 - a stub's think time
        return jsonify({"authorization": uuid.uuid4().hex[:12], "approved": True})

    serve(app, int(config["issuer"]["port"]))


if __name__ == "__main__":
    main()
