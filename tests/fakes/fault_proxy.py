"""A fault-injecting HTTP proxy in front of an S3 server (SeaweedFS), for tests and benchmarks.

Requests are relayed verbatim (the Host header too, so the client's SigV4 signature stays valid)
over one keep-alive upstream connection per client connection. While a fault plan is set, the
requests it picks get, instead of their reply:

- ``Fault.ERROR``: ``503 SlowDown``; the request is not forwarded.
- ``Fault.RESET``: a TCP reset (RST) before anything is forwarded: the request is not applied.
- ``Fault.TRUNCATE``: the request is forwarded and applied, then the reply advertises its full
  Content-Length, sends half the body and the connection closes (a server dying mid-body). A reply
  without a body is cut before its status line: the request landed, its answer was lost.

A plan picks every matching request (``rate=1``, the fault kinds taking turns, so a test knows
exactly what happens) or a seeded random share of them (``rate<1``, for the benchmark). Counters
(``injected``, ``forwarded``, ``requests``) and ``wait_injected`` let a test wait for the moment it
tests instead of sleeping.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_SLOW_DOWN = b'<Error><Code>SlowDown</Code><Message>injected by the test proxy</Message></Error>'
# hop-by-hop or recomputed headers that are not relayed as they came
_NOT_RELAYED = ('transfer-encoding', 'connection', 'content-length', 'keep-alive')


class Fault(str, Enum):
    ERROR = '503'
    RESET = 'reset'
    TRUNCATE = 'truncate'


Matcher = Callable[[str, str], bool]  # (method, path) -> whether the plan applies


class _Plan:
    def __init__(self, faults: tuple[Fault, ...], rate: float, match: Matcher | None, seed: int):
        self.faults = faults
        self.rate = rate
        self.match = match
        self.random = random.Random(seed)
        self.turn = 0

    def pick(self, method: str, path: str) -> Fault | None:
        if self.match is not None and not self.match(method, path):
            return None
        if self.rate < 1.0 and self.random.random() >= self.rate:
            return None
        fault = self.faults[self.turn % len(self.faults)]
        self.turn += 1
        return fault


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy


class _Handler(BaseHTTPRequestHandler):
    server: _ProxyServer

    protocol_version = 'HTTP/1.1'
    upstream: http.client.HTTPConnection | None = None

    def log_message(self, *args) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle's algorithm
        # and delayed ACKs stall each reply for tens of milliseconds
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        fault = self.server.proxy._pick(self.command, self.path)
        if fault is Fault.ERROR:
            self._reply(503, [('Content-Type', 'application/xml')], _SLOW_DOWN)
        elif fault is Fault.RESET:
            self._reset()
        else:
            status, headers, data = self._forward(body)
            if fault is Fault.TRUNCATE:
                self._truncated(status, headers, data)
            else:
                self._reply(status, headers, data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        if self.server.proxy.delay_s:
            time.sleep(self.server.proxy.delay_s)
        for attempt in (1, 2):  # the kept-alive upstream connection may have expired
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection(
                    '127.0.0.1', self.server.proxy.upstream_port, timeout=30
                )
                self.upstream.connect()
                self.upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.upstream.request(self.command, self.path, body, dict(self.headers.items()))
                response = self.upstream.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException):
                self.upstream.close()
                self.upstream = None
                if attempt == 2:
                    raise
        self.server.proxy._forwarded(self.command, self.path)
        headers = [
            (name, value)
            for name, value in response.getheaders()
            if name.lower() not in _NOT_RELAYED
        ]
        if self.command == 'HEAD':  # the object's length, though no body follows
            headers.append(('Content-Length', response.getheader('Content-Length', '0')))
        return response.status, headers, data

    def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.command != 'HEAD':
            self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)

    def _truncated(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        if self.command != 'HEAD' and len(data) >= 2:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
        self._close(reset=False)

    def _reset(self) -> None:
        self._close(reset=True)

    def _close(self, reset: bool) -> None:
        if reset:  # SO_LINGER 0: close() sends RST instead of FIN
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)
            )
        else:
            self.connection.shutdown(socket.SHUT_RDWR)
        self.connection.close()
        self.close_connection = True

    def finish(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
        try:
            super().finish()
        except (OSError, ValueError):  # the socket was closed on purpose
            pass


class FaultProxy:
    """Loopback proxy to ``127.0.0.1:upstream_port``; ``url`` is its endpoint."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay_s = 0.0  # added before each forwarded request (a slow store)
        self.injected: Counter[Fault] = Counter()
        self.forwarded = 0
        self.requests: Counter[tuple[str, str]] = Counter()  # forwarded (method, path sans query)
        self._plan: _Plan | None = None
        self._changed = threading.Condition()
        self.server = _ProxyServer(('127.0.0.1', 0), _Handler)
        self.server.proxy = self
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def set_faults(
        self,
        faults: Iterable[Fault] = tuple(Fault),
        rate: float = 1.0,
        match: Matcher | None = None,
        seed: int = 0,
    ) -> None:
        """Inject ``faults`` (taking turns) into the matching requests, a ``rate`` share of them
        (seeded) when ``rate < 1``; replaces the current plan."""
        faults = tuple(faults)
        if not faults or not 0 < rate <= 1:
            raise ValueError(f'need at least one fault and 0 < rate <= 1, got {faults}, {rate}')
        with self._changed:
            self._plan = _Plan(faults, rate, match, seed)

    def clear(self) -> None:
        """Relay everything again."""
        with self._changed:
            self._plan = None

    def wait_injected(self, predicate: Callable[[Counter[Fault]], bool], timeout: float) -> bool:
        """Wait until ``predicate(injected)`` holds (True) or ``timeout`` passes (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.injected), timeout)

    def _pick(self, method: str, path: str) -> Fault | None:
        with self._changed:
            fault = self._plan.pick(method, path) if self._plan is not None else None
            if fault is not None:
                self.injected[fault] += 1
                self._changed.notify_all()
            return fault

    def _forwarded(self, method: str, path: str) -> None:
        with self._changed:
            self.forwarded += 1
            self.requests[method, path.partition('?')[0]] += 1

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
