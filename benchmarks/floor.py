"""What this machine allows: the frame benchmark's clients against a server that does no work.

    python -m benchmarks.floor                 # 1 and 16 clients, 10 s each, 10 KB answers
    python -m benchmarks.floor --size 200000   # a CT frame's size instead of a WSI tile's

The server is uvicorn with the same parser, event loop and socket options as `tessel serve`
(httptools, uvloop, TCP_NODELAY), answering every GET with one constant multipart/related
frame: no authentication, lookup, read or audit. The clients are `make bench`'s own
(benchmarks/compare/load.py: keep-alive http.client connections in threads). Its latency is
the floor any Python server on this machine shares with its clients' CPU; read the frame
figures of `make bench` against it (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

from benchmarks.compare.load import Request, Target, run_load
from benchmarks.compare.servers import free_port

BOUNDARY = "floor-boundary"


def body(size: int) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Type: application/octet-stream; "
            "transfer-syntax=1.2.840.10008.1.2.4.50\r\n\r\n").encode()
    return head + b"\x5a" * size + f"\r\n--{BOUNDARY}--\r\n".encode()


def serve(port: int, size: int) -> None:
    import uvicorn

    payload = body(size)
    headers = [(b"content-type", f'multipart/related; type="application/octet-stream"; boundary={BOUNDARY}'.encode()),
               (b"content-length", str(len(payload)).encode())]

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": payload})  # type: ignore[operator]

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # as tessel's app.serve
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, limit_concurrency=2000)).run(
        sockets=[sock])


def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the floor server did not listen on {port} within {timeout} s")


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000, help="frame bytes per answer (default: a WSI tile)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per client count")
    parser.add_argument("--clients", default="1,16", help="comma-separated client counts")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server process itself
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.size)
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.floor", "--serve", str(port), "--size", str(args.size)])
    try:
        wait_listening(port)
        target = Target("floor", f"http://127.0.0.1:{port}/floor", None, "127.0.0.1", 0, "FLOOR", pids=(server.pid,))
        plan = [Request("GET", f"/studies/1/series/1/instances/1/frames/{n}",
                        (("Accept", 'multipart/related; type="application/octet-stream"; transfer-syntax=*'),))
                for n in range(1, 1001)]
        print(f"floor: uvicorn answering {args.size:,}-byte frames with no work; load {os.getloadavg()[0]:.2f}")
        for clients in (int(c) for c in args.clients.split(",")):
            result = run_load(target, plan, clients=clients, duration=args.duration, min_requests=100)
            if result.errors:
                raise SystemExit(f"floor run failed: {result.errors[:3]}")
            lat = sorted(result.latencies)
            rate = len(lat) / result.seconds
            print(f"  {clients:>2} client(s): p50 {percentile(lat, .5) * 1e3:6.2f} ms  "
                  f"p95 {percentile(lat, .95) * 1e3:6.2f} ms  p99 {percentile(lat, .99) * 1e3:6.2f} ms  "
                  f"{rate:7.0f} frames/s  mean {statistics.fmean(lat) * 1e3:.2f} ms  "
                  f"client cpu {result.client_cpu_s / result.seconds:.2f}  "
                  f"server cpu {result.server_cpu_s / result.seconds:.2f} cores "
                  f"({result.server_cpu_s / len(lat) * 1e6:.0f} us per frame)  n={len(lat)}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
