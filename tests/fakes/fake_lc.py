"""A fake Sedna LocalController: the worker-report endpoint with the parsing rules of the real one.

Rules (PROTOCOL.md §4.1, §4.4), as Sedna's Go LC (go-restful + Go's ServeMux) and GM apply them:
- only POST (405); a path containing ``//`` answers 301 (a client that follows it re-sends a GET,
  which gets 405, and the report is lost); path ``/sedna/workers/{name}/info`` (a trailing ``/``
  allowed), else 404;
- Content-Type exactly ``application/json`` (case-sensitive; a ``;charset=`` suffix is ignored),
  else 415;
- only the first JSON value of the body is read; NaN/Infinity are syntax errors; the body must be
  an object whose ``name`` equals the path segment; keys match case-insensitively: else 400;
- everything else answers 200 even when the report is then dropped (LC routes by the exact
  ``ownerKind``; GM rejects type mismatches, an unknown ``kind`` or ``status``, and ``running``).
  Such reports land in ``dropped`` with the reason; good ones in ``accepted``. ``ready`` and
  ``waiting`` are legal for GM but never for a worker, so the fake drops them too.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_PATH_RE = re.compile(r'^/sedna/workers/([^/]+)/info/?$')
OWNER_KIND = 'lifelonglearningjob'
KINDS = ('train', 'eval', 'deploy')
WORKER_STATUSES = ('completed', 'failed')


class BadReport(ValueError):
    """The report decodes, but GM would reject it (so nothing would be appended)."""


@dataclass
class Exchange:
    """One request the fake LC answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    reason: str = ''


@dataclass
class FakeLC:
    """The LC's ``/sedna/workers/{name}/info`` endpoint on a loopback port (0 = any free one).

    ``fail_next`` makes the next N POSTs answer 503, to exercise client retries.
    """

    port: int = 0
    fail_next: int = 0
    accepted: list[dict] = field(default_factory=list)
    dropped: list[tuple[dict, str]] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def start(self) -> FakeLC:
        self._server = _Server(('127.0.0.1', self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def __enter__(self) -> FakeLC:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def _take_failure(self) -> bool:
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return True
            return False

    def _judge(self, report: dict) -> None:
        with self._lock:
            try:
                check_report(report)
            except BadReport as e:
                self.dropped.append((report, str(e)))
            else:
                self.accepted.append(report)


def _reject_constant(name: str):
    raise ValueError(f'{name} is not JSON')


def decode_body(body: bytes) -> object:
    """The first JSON value of ``body``, as Go's json.Decoder reads it (no NaN/Infinity)."""
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    text = body.decode('utf-8')
    value, _end = decoder.raw_decode(text, len(text) - len(text.lstrip()))
    return value


def _fold(obj: Mapping) -> dict:
    """Keys lower-cased: Go's decoder matches struct fields case-insensitively."""
    return {str(k).lower(): v for k, v in obj.items()}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_model(model: object, where: str) -> None:
    if not isinstance(model, dict):
        raise BadReport(f'{where} is not an object')
    model = _fold(model)
    for key in ('format', 'url'):
        if key in model and not isinstance(model[key], str):
            raise BadReport(f'{where}.{key} must be a string')
    metrics = model.get('metrics')
    if metrics is not None and not (
        isinstance(metrics, dict) and all(_is_number(v) for v in metrics.values())
    ):
        raise BadReport(f'{where}.metrics must be an object of numbers, got {metrics!r}')
    classes = model.get('classes')
    if classes is not None and not (
        isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    ):
        raise BadReport(f'{where}.classes must be a list of strings or null, got {classes!r}')
    for key, value in model.items():
        # a JSON 3.0 or 1e3 decodes to a Python float: Go's int fields refuse those too
        if key.startswith('number_of_') and not (
            isinstance(value, int) and not isinstance(value, bool)
        ):
            raise BadReport(f'{where}.{key} must be an integer, got {value!r}')
    if 'history_metric' in model and not _is_number(model['history_metric']):
        raise BadReport(f'{where}.history_metric must be a number')


def check_report(report: dict) -> None:
    """Raise BadReport if LC would drop ``report`` or GM would append nothing for it."""
    report = _fold(report)
    for key in ('namespace', 'ownername', 'ownerkind', 'kind', 'status'):
        if not isinstance(report.get(key), str):
            raise BadReport(f'{key} must be a string, got {report.get(key)!r}')
    if report['ownerkind'] != OWNER_KIND:
        raise BadReport(f'ownerKind {report["ownerkind"]!r} is not {OWNER_KIND!r}: LC drops it')
    if report['kind'].lower() not in KINDS:
        raise BadReport(f'kind {report["kind"]!r} not in {KINDS}')
    if report['status'].lower() not in WORKER_STATUSES:
        raise BadReport(f'status {report["status"]!r}: a worker may send only {WORKER_STATUSES}')
    results = report.get('results')
    if results is not None:
        if not isinstance(results, list):
            raise BadReport(f'results must be a list, got {results!r}')
        for i, model in enumerate(results):
            _check_model(model, f'results[{i}]')
    owner_info = report.get('ownerinfo')
    if owner_info is not None and not isinstance(owner_info, dict):
        raise BadReport(f'ownerInfo must be an object, got {owner_info!r}')


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass  # the exchanges list is the log

    @property
    def raw_path(self) -> str:
        # http.server collapses a leading '//' in self.path (CVE fix); Go's mux sees it
        parts = self.requestline.split()
        return parts[1] if len(parts) >= 2 else self.path

    def _reply(self, status: int, reason: str = '', body: bytes = b'') -> None:
        # recorded before replying, so a client that got its answer sees it in `exchanges`
        exchange = Exchange(self.command, self.raw_path, dict(self.headers), body, status, reason)
        self.server.fake_lc._record(exchange)
        message = json.dumps({'Status': status, 'Message': reason or 'OK'}).encode()
        self.send_response(status)
        if status == 301:
            self.send_header('Location', re.sub('/{2,}', '/', self.raw_path))
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(message)))
        self.end_headers()
        self.wfile.write(message)

    def _read_body(self) -> bytes:
        length = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(length) if length else b''

    def _not_post(self) -> None:
        body = self._read_body()
        if '//' in self.raw_path:
            self._reply(301, 'path with //', body)
        else:
            self._reply(405, f'{self.command} not allowed', body)

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_post  # noqa: N815 - http.server's naming

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self._read_body()
        lc = self.server.fake_lc
        if '//' in self.raw_path:
            return self._reply(301, 'path with //', body)
        match = _PATH_RE.match(self.raw_path)
        if match is None:
            return self._reply(404, 'no such route', body)
        content_type = (self.headers.get('Content-Type') or '').split(';')[0].strip()
        if content_type != 'application/json':
            return self._reply(415, f'unsupported Content-Type {content_type!r}', body)
        if lc._take_failure():
            return self._reply(503, 'injected failure', body)
        try:
            report = decode_body(body)
        except ValueError as e:
            return self._reply(400, f'unreadable body: {e}', body)
        if not isinstance(report, dict):
            return self._reply(400, 'body is not an object', body)
        if _fold(report).get('name') != match.group(1):
            return self._reply(400, 'name does not match the path', body)
        lc._judge(report)
        return self._reply(200, '', body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake_lc: FakeLC) -> None:
        super().__init__(address, _Handler)
        self.fake_lc = fake_lc
