"""A small TCP proxy in the data path of one service's connections, with injectable latency.

``python -m hopscope.lab.proxy --listen PORT --target PORT --control FILE``: every connection
to 127.0.0.1:LISTEN is relayed to 127.0.0.1:TARGET. The control file (JSON, re-read every
0.2 s) sets ``latency_ms``: each chunk travelling client → server is held that long before it
is forwarded (so each request is delayed, as a slow link or an overloaded middlebox delays
it); a latency past the client's timeout makes timeouts. ``target_port``, when present, moves
the proxy to another server as a virtual IP moves in a failover: new connections go there and
the open ones are closed (their server is gone). A missing or malformed control file means no
latency and the ``--target`` port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path

CONTROL_POLL_S = 0.2


class Proxy:
    """Relays connections; ``latency_s`` is read from the control file by :meth:`watch`."""

    def __init__(self, target_port: int, control: Path) -> None:
        self.default_port = target_port
        self.target_port = target_port
        self.control = control
        self.latency_s = 0.0
        # The open connections' writers (client side, server side), closed when the target moves.
        self.open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    async def watch(self) -> None:
        while True:
            try:
                document = json.loads(self.control.read_text(encoding="utf-8"))
                self.latency_s = max(0.0, float(document.get("latency_ms", 0)) / 1000)
                target = int(document.get("target_port", self.default_port))
            except (OSError, ValueError, AttributeError, TypeError):
                self.latency_s, target = 0.0, self.default_port
            if target != self.target_port:
                self.target_port = target
                for writers in list(self.open):
                    for writer in writers:
                        with contextlib.suppress(Exception):
                            writer.close()
            await asyncio.sleep(CONTROL_POLL_S)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if delayed and self.latency_s:
                    await asyncio.sleep(self.latency_s)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self.open.add(pair)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, delayed=True),
                self._pipe(up_reader, writer, delayed=False),
            )
        finally:
            self.open.discard(pair)


async def _serve(listen: int, target: int, control: Path) -> None:
    proxy = Proxy(target, control)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", listen)
    watcher = asyncio.create_task(proxy.watch())
    async with server:
        await server.serve_forever()
    watcher.cancel()


def main() -> None:
    """Command line: ``--listen``, ``--target``, ``--control``."""
    parser = argparse.ArgumentParser(prog="hopscope.lab.proxy")
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--control", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.listen, args.target, args.control))


if __name__ == "__main__":
    main()
