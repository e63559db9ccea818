"""Risk: a Redis cache in front of a rules table in Postgres (cache-aside).

``POST /score``: ``GET rules:<merchant class>`` in Redis; on a miss (or when Redis is
unreachable) the rules are aggregated from the ``risk_rules`` table on the primary (a scan of
unindexed rows, the reason the cache exists) and written back with ``SET … EX``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import redis
from _common import parse_args, serve, setup_telemetry
from flask import Flask, jsonify, request
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from psycopg_pool import ConnectionPool

log = logging.getLogger("risk")
CACHE_TTL_S = 30


def main() -> None:
    config, node = parse_args("risk")
    setup_telemetry("risk", node, config)
    PsycopgInstrumentor().instrument()
    RedisInstrumentor().instrument()
    pg = config["postgres"]
    primary = pg["primary"]
    pool = ConnectionPool(
        f"host={primary['host']} port={primary['port']} dbname={pg['dbname']} user={pg['user']}",
        min_size=1,
        max_size=4,
        kwargs={"autocommit": True},
        open=True,
    )
    cache = redis.Redis(
        host="127.0.0.1", port=config["redis"]["port"], socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )  # fmt: skip
    app = Flask("risk")
    FlaskInstrumentor().instrument_app(app)

    def rules(merchant_class: str) -> dict[str, float]:
        key = f"rules:{merchant_class}"
        try:
            cached = cache.get(key)
        except redis.RedisError as error:
            log.warning("risk cache unavailable (%s): reading the rules table", error)
            cached = None
        if cached is not None:
            return dict(json.loads(cached))
        with pool.connection() as conn:
            row = conn.execute(
                "SELECT max(max_amount), avg(score) FROM risk_rules WHERE merchant_class = %s",
                (merchant_class,),
            ).fetchone()
        value = {"max_amount": float(row[0] or 0), "score": float(row[1] or 0)} if row else {}
        with contextlib.suppress(redis.RedisError):
            cache.set(key, json.dumps(value), ex=CACHE_TTL_S)
        return value

    @app.post("/score")
    def score() -> Any:
        body = request.get_json(force=True)
        found = rules(str(body.get("merchant_class", "retail")))
        allow = float(body.get("amount", 0)) <= found.get("max_amount", 0)
        return jsonify({"decision": "allow" if allow else "deny", "score": found.get("score")})

    serve(app, int(config["risk"]["port"]))


if __name__ == "__main__":
    main()
