"""A tiny risk service in its own process: HTTP on loopback, instrumented with hopscope.

Run as ``python risk_service.py``; prints its port, serves ``POST /score`` until stdin closes,
then flushes its telemetry and exits. Endpoints and topics come from ``HOPSCOPE_*`` variables.
"""

import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hopscope.ingest import configure, rpc_server

telemetry = configure("risk", "risk-1", environment="test")
log = logging.getLogger("risk")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        with rpc_server("risk", "Score", headers=headers, rpc_system="http"):
            log.info("scored payment", extra={"payment.id": headers.get("x-payment-id")})
            body = b'{"score": 12}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_address[1], flush=True)
sys.stdin.read()  # the test closes stdin to stop us
server.shutdown()
telemetry.shutdown(20)
