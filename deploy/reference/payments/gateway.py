"""Gateway: the payment API, with a client-side load balancer over the payment nodes.

``POST /v1/payments`` (card number in the JSON body, or in the ``card`` query parameter) picks
a payment node by the configured strategy (``round_robin``, ``least_conn``, ``ip_hash`` on the
client address from ``X-Forwarded-For``) and calls ``POST /authorize`` on it. A connection
error, a timeout or a 5xx answer is a failed attempt: the node is skipped for a while (a
passive health check) and the request is retried on another node, up to ``attempts`` tries.
Each attempt is its own ``requests`` CLIENT span under the gateway's SERVER span, which is
how a failover looks in standard instrumentation (no resend count, no node name: the node is
the attempt's ``server.port``).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time
from typing import Any

import requests
from _common import parse_args, serve, setup_telemetry
from flask import Flask, jsonify, request
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor

log = logging.getLogger("gateway")
# Seconds a node that failed is skipped, unless every node is skipped.
EJECT_S = 3.0


class Balancer:
    """The client-side load balancer: strategy, in-flight counts, ejected nodes."""

    def __init__(self, nodes: list[dict[str, Any]], strategy: str) -> None:
        if strategy not in {"round_robin", "least_conn", "ip_hash"}:
            raise ValueError(f"strategy must be round_robin, least_conn or ip_hash: {strategy}")
        self.nodes = nodes
        self.strategy = strategy
        self._cycle = itertools.count()
        self._lock = threading.Lock()
        self.in_flight = {n["node"]: 0 for n in nodes}
        self.ejected_until = {n["node"]: 0.0 for n in nodes}

    def order(self, client: str) -> list[dict[str, Any]]:
        """Every node, the preferred first; healthy nodes before ejected ones."""
        with self._lock:
            count = len(self.nodes)
            if self.strategy == "round_robin":
                start = next(self._cycle) % count
                ranked = self.nodes[start:] + self.nodes[:start]
            elif self.strategy == "least_conn":
                ranked = sorted(self.nodes, key=lambda n: self.in_flight[n["node"]])
            else:
                start = int(hashlib.sha256(client.encode()).hexdigest(), 16) % count
                ranked = self.nodes[start:] + self.nodes[:start]
            now = time.monotonic()
            return sorted(ranked, key=lambda n: self.ejected_until[n["node"]] > now)

    def begin(self, node: str) -> None:
        with self._lock:
            self.in_flight[node] += 1

    def end(self, node: str, *, failed: bool) -> None:
        with self._lock:
            self.in_flight[node] -= 1
            if failed:
                self.ejected_until[node] = time.monotonic() + EJECT_S


def main() -> None:
    config, node = parse_args("gateway")
    setup_telemetry("gateway", node, config)
    RequestsInstrumentor().instrument()
    settings = config["gateway"]
    balancer = Balancer(config["payment_nodes"], settings.get("lb", "round_robin"))
    attempts = int(settings.get("attempts", 3))
    timeout = float(settings.get("timeout_s", 1.5))
    session = requests.Session()
    app = Flask("gateway")
    FlaskInstrumentor().instrument_app(app)

    @app.post("/v1/payments")
    def payments() -> Any:
        body = request.get_json(force=True)
        pan = request.args.get("card") or body.get("card_number", "")
        client = request.headers.get("X-Forwarded-For", request.remote_addr or "")
        log.info("payment %s for card %s from %s", body.get("payment_id"), pan, client)
        last_error = "no node"
        for target in balancer.order(client)[:attempts]:
            balancer.begin(target["node"])
            failed = True
            try:
                answer = session.post(
                    f"http://127.0.0.1:{target['port']}/authorize",
                    json={**body, "card_number": pan},
                    timeout=timeout,
                )
                failed = answer.status_code >= 500
                if not failed:
                    return jsonify(answer.json()), answer.status_code
                last_error = f"{target['node']} answered {answer.status_code}"
            except requests.RequestException as error:
                last_error = f"{target['node']}: {type(error).__name__}"
            finally:
                balancer.end(target["node"], failed=failed)
            log.warning("attempt on %s failed (%s), next node", target["node"], last_error)
        log.error("payment %s failed on every node: %s", body.get("payment_id"), last_error)
        return jsonify({"status": "error", "reason": last_error}), 503

    serve(app, int(settings["port"]))


if __name__ == "__main__":
    main()
