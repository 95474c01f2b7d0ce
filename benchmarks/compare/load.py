"""The load generator: keep-alive HTTP/1.1 clients in threads, one connection each.

http.client is used directly (no per-request session machinery) so the client costs
little CPU per request; the CPU it does cost is measured and reported with every figure.
A scenario is a deterministic list of requests that the clients take in order
(cycling), first a warm-up round that is discarded, then the measured phase.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psutil


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # relative to the target's DICOMweb base ("/studies?PatientID=X")
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True, slots=True)
class Target:
    """A DICOM server as the harness sees it: standard interfaces only."""

    name: str
    dicomweb: str  # base URL: http://127.0.0.1:PORT/<prefix> (".../studies" follows)
    authorization: str | None  # the Authorization header value, if the server needs one
    dimse_host: str
    dimse_port: int
    ae_title: str
    pids: tuple[int, ...] = ()  # server processes, for the server CPU figure


class Connection:
    """One keep-alive connection to the target; reconnects after the server closes it."""

    def __init__(self, target: Target, timeout: float = 600) -> None:
        parts = urlsplit(target.dicomweb)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.base_headers = {"Host": f"{self.host}:{self.port}"}
        if target.authorization:
            self.base_headers["Authorization"] = target.authorization
        self._conn: http.client.HTTPConnection | None = None

    def send(self, request: Request) -> Response:
        for attempt in (1, 2):
            conn = self._conn or self._connect()
            try:
                headers = dict(self.base_headers)
                headers.update(request.headers)
                conn.request(request.method, self.prefix + request.path, body=request.body, headers=headers)
                raw = conn.getresponse()
                body = raw.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed while idle: retry once on a new one.
                self.close()
                if attempt == 2:
                    raise
                continue
            if raw.will_close:
                self.close()
            return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, body)
        raise AssertionError("unreachable")

    def _connect(self) -> http.client.HTTPConnection:
        self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self._conn.connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU time (user + system) used so far by these processes and all their children."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def wait_idle(pids: Sequence[int], *, below: float = 0.1, quiet_for: float = 1.0, timeout: float = 600) -> float:
    """Wait until the server's CPU stays under `below` cores for `quiet_for` seconds.

    Background work left over from one scenario (transcoding after STOW, journal
    flushes) must not be billed to the next. Returns the seconds waited.
    """
    start = time.monotonic()
    quiet_since = None
    last = cpu_seconds(pids)
    while time.monotonic() - start < timeout:
        time.sleep(0.1)
        now = cpu_seconds(pids)
        busy = (now - last) / 0.1
        last = now
        if busy < below:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_for:
                break
        else:
            quiet_since = None
    return time.monotonic() - start


Check = Callable[[Request, Response], str | None]  # an error message, or None if the answer is right


def expect_status(*codes: int) -> Check:
    def check(request: Request, response: Response) -> str | None:
        if response.status in codes:
            return None
        return f"{request.method} {request.path}: HTTP {response.status} {response.body[:200]!r}"

    return check


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, measured phase only
    payload_bytes: int = 0  # bytes sent plus received in the measured phase
    seconds: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)


def run_load(
    target: Target,
    plan: Sequence[Request],
    *,
    clients: int,
    duration: float,
    min_requests: int,
    max_requests: int | None = None,
    warmup_per_client: int = 1,
    check: Check = expect_status(200),
) -> LoadResult:
    """Send `plan` (cycled) from `clients` threads for about `duration` seconds.

    Each client first sends `warmup_per_client` requests whose timings are discarded
    (connection set-up, server caches); then all clients start the measured phase
    together. The phase ends once `duration` has passed and at least `min_requests`
    have finished (slow servers still get a usable sample), or at `max_requests`.
    """
    if not plan:
        raise ValueError("empty request plan")
    if clients < 1:
        raise ValueError("clients must be at least 1")
    counter = itertools.count()
    lock = threading.Lock()
    result = LoadResult()
    measuring = threading.Event()
    stop = threading.Event()
    ready = threading.Barrier(clients + 1)
    finished = [0]
    issued = [0]
    cap = max_requests if max_requests is not None else 1 << 62

    def next_request() -> Request:
        with lock:
            return plan[next(counter) % len(plan)]

    def worker() -> None:
        conn = Connection(target)
        try:
            for _ in range(warmup_per_client):
                _send_checked(conn, next_request(), check, None, lock)
            ready.wait()
            measuring.wait()
            while not stop.is_set():
                with lock:
                    if issued[0] >= cap:
                        break
                    issued[0] += 1
                request = next_request()
                started = time.perf_counter()
                error, size = _send_checked(conn, request, check, result, lock)
                elapsed = time.perf_counter() - started
                with lock:
                    if error is None:
                        result.latencies.append(elapsed)
                        result.payload_bytes += size
                    finished[0] += 1
        except threading.BrokenBarrierError:
            pass
        except Exception as exc:  # a dead client must show up in the figure, not vanish
            with lock:
                result.errors.append(f"client failed: {exc!r}")
            ready.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        stop.set()
        measuring.set()
        for t in threads:
            t.join()
        return result
    cpu0, server0, wall0 = time.process_time(), cpu_seconds(target.pids), time.perf_counter()
    measuring.set()
    while True:
        time.sleep(0.01)
        with lock:
            done = finished[0]
        elapsed = time.perf_counter() - wall0
        if done >= cap or (elapsed >= duration and done >= min_requests) or not any(t.is_alive() for t in threads):
            break
    stop.set()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - wall0
    result.client_cpu_s = time.process_time() - cpu0
    result.server_cpu_s = cpu_seconds(target.pids) - server0
    return result


def _send_checked(conn: Connection, request: Request, check: Check, result: LoadResult | None,
                  lock: threading.Lock) -> tuple[str | None, int]:
    try:
        response = conn.send(request)
    except (OSError, http.client.HTTPException) as exc:
        error: str | None = f"{request.method} {request.path}: {exc!r}"
        response = None
    else:
        error = check(request, response)
    if error is not None and result is not None:
        with lock:
            if len(result.errors) < 20:
                result.errors.append(error)
            else:
                result.errors[-1] = f"... and more ({error})"
    size = (len(request.body) if request.body else 0) + (len(response.body) if response else 0)
    return error, size


def fetch(target: Target, request: Request) -> Response:
    """One request outside any measurement (set-up and checks)."""
    conn = Connection(target)
    try:
        return conn.send(request)
    finally:
        conn.close()


def get(path: str, accept: str) -> Request:
    return Request("GET", path, (("Accept", accept),))


def json_request(path: str) -> Request:
    return get(path, "application/dicom+json")


def as_json(response: Response) -> Any:
    import json

    return json.loads(response.body) if response.body else []


class OtherWork:
    """Cores kept busy by processes outside this run (the harness, its servers, their children).

    The load average cannot tell: the run's own clients and servers raise it. Every second
    the machine's busy CPU time (/proc/stat) is compared with the CPU time this process tree
    used; the difference is other work, which makes every figure of the run pessimistic.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.samples: list[float] = []  # cores busy with other work, one per interval
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="other-work", daemon=True)

    def __enter__(self) -> "OtherWork":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples) or [0.0]
        return {"mean_cores": round(sum(ordered) / len(ordered), 3),
                "p95_cores": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
                "seconds": round(len(self.samples) * self._interval, 1)}

    def _run(self) -> None:
        me = psutil.Process()
        seen: dict[int, float] = {}
        busy = _machine_busy_seconds()
        tree = self._tree_seconds(me, seen)
        while not self._stop.wait(self._interval):
            busy_now, tree_now = _machine_busy_seconds(), self._tree_seconds(me, seen)
            self.samples.append(max(0.0, (busy_now - busy) - (tree_now - tree)) / self._interval)
            busy, tree = busy_now, tree_now

    @staticmethod
    def _tree_seconds(me: psutil.Process, seen: dict[int, float]) -> float:
        """CPU seconds of this process and every descendant ever seen (an exited one keeps its
        last reading, so its time is not mistaken for other work)."""
        for proc in [me, *me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                seen[proc.pid] = t.user + t.system
            except psutil.Error:
                continue
        return sum(seen.values())


def _machine_busy_seconds() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0)
