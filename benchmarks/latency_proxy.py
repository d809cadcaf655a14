"""A TCP proxy on 127.0.0.1 that adds a fixed one-way delay: the stand-in for `tc netem delay`.

Used by benchmarks/run.py when the kernel has no sch_netem (as in Firecracker sandboxes). Each
upstream gets its own listening port; every byte is delayed DELAY each way, so a round trip
costs 2 x DELAY, like `netem delay DELAY` on both ends of a link:

  * connect: the client's connect() returns at once on loopback, so the proxy reads nothing from
    it for one RTT (SYN, SYN-ACK) and opens the upstream connection 1.5 RTT after the accept
    (the final ACK reaching the server): the server's first byte (an SSH banner) reaches the
    client 2 RTT after connect(), the client's first byte reaches the server 1.5 RTT after it,
    as through netem;
  * data: every chunk read is stamped now + DELAY and written at that time, in order, without
    waiting for earlier chunks' timers to run one after another (latency, not bandwidth);
  * half-close (EOF) travels with the same delay.

Usage: python latency_proxy.py --delay-ms 25 HOST:PORT [HOST:PORT ...]
Prints one JSON line {"HOST:PORT": listen_port, ...} once every listener is up, then serves until
SIGTERM/SIGINT. Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _reader(src: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]], delay: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await src.read(65536)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                return
    except (ConnectionError, OSError):
        queue.put_nowait((loop.time() + delay, b""))


async def _writer(queue: asyncio.Queue[tuple[float, bytes]], dst: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if dst.can_write_eof():
                    dst.write_eof()
                return
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        return


async def _handle(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    upstream: tuple[str, int],
    delay: float,
) -> None:
    _nodelay(client_w)
    up_to_server: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    down_to_client: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []
    server_w: asyncio.StreamWriter | None = None
    try:
        await asyncio.sleep(2 * delay)  # SYN + SYN-ACK: the client may send from now on
        tasks.append(asyncio.create_task(_reader(client_r, up_to_server, delay)))
        await asyncio.sleep(delay)  # the final ACK reaches the server: accept() returns there
        server_r, server_w = await asyncio.open_connection(*upstream)
        _nodelay(server_w)
        tasks.append(asyncio.create_task(_writer(up_to_server, server_w)))
        tasks.append(asyncio.create_task(_reader(server_r, down_to_client, delay)))
        tasks.append(asyncio.create_task(_writer(down_to_client, client_w)))
        await asyncio.gather(*tasks, return_exceptions=True)
    except (ConnectionError, OSError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        for w in (client_w, server_w):
            if w is not None:
                with contextlib.suppress(Exception):
                    w.close()


async def _main(targets: list[str], delay: float) -> None:
    servers = []
    ports: dict[str, int] = {}
    for target in targets:
        host, _, port = target.rpartition(":")
        upstream = (host, int(port))

        async def handler(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, upstream: tuple[str, int] = upstream
        ) -> None:
            with contextlib.suppress(asyncio.CancelledError):  # cancelled at shutdown: not an error
                await _handle(r, w, upstream, delay)

        server = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=256)
        servers.append(server)
        ports[target] = server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay (RTT = 2x)")
    parser.add_argument("targets", nargs="+", metavar="HOST:PORT")
    args = parser.parse_args()
    asyncio.run(_main(args.targets, args.delay_ms / 1000.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
