"""The LC's worker-report endpoint ``POST /sedna/workers/{name}/info`` (PROTOCOL.md §4).

HTTP replies follow §4.1 (Go's ServeMux + go-restful as pinned by Sedna): a path with ``//`` gets
301, an unknown path 404, a method other than POST 405, a Content-Type other than exactly
``application/json`` (``;charset`` ignored) 415, an unreadable body (NaN/Infinity included) or a
``name`` that differs from the path segment 400, everything else 200 ``{"Status":200,"Message":
"OK"}`` — even when the report is then dropped, as LC/GM drop it: ``ownerKind`` not exactly
``lifelonglearningjob``, another job, or a body GM cannot decode (§4.4: an unknown ``kind`` or
``status``, ``running``, type mismatches). Accepted reports become ``Report`` objects handed to
``on_report`` (the runner queues them; it is the one writer of conditions). XML bodies, which
go-restful also accepts, are answered 415 here.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from robo_lifelong_cloud.controller.conditions import (
    ConditionType,
    DataError,
    Stage,
    condition_data,
)

log = logging.getLogger(__name__)

OWNER_KIND = 'lifelonglearningjob'
STAGE_OF_KIND = {'train': Stage.TRAIN, 'eval': Stage.EVAL, 'deploy': Stage.DEPLOY}
# GM's accepted statuses for this job kind; 'running' is refused (§4.4)
TYPE_OF_STATUS = {
    'ready': ConditionType.READY,
    'completed': ConditionType.COMPLETED,
    'failed': ConditionType.FAILED,
    'waiting': ConditionType.WAITING,
}
_PATH_RE = re.compile(r'^/sedna/workers/([^/]+)/info/?$')


@dataclass(frozen=True)
class Report:
    """A report GM would append: its condition and the output models (for knowledgeBase)."""

    worker: str
    stage: Stage
    type: ConditionType
    data: str
    models: tuple[dict[str, Any], ...]


class Dropped(ValueError):
    """The report was answered 200 but LC/GM would append nothing for it."""


def _reject_constant(name: str) -> None:
    raise ValueError(f'{name} is not valid JSON')


def decode_body(body: bytes) -> Any:
    """The first JSON value of ``body`` (Go's json.Decoder: trailing data ignored, no NaN)."""
    text = body.decode('utf-8')
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    value, _ = decoder.raw_decode(text, len(text) - len(text.lstrip()))
    return value


def to_report(body: Mapping[str, Any], namespace: str, job: str) -> Report:
    """LC routing + GM decoding of a report body; Dropped with the reason otherwise."""
    folded = {str(k).lower(): v for k, v in body.items()}
    for key in ('name', 'namespace', 'ownername', 'ownerkind', 'kind', 'status'):
        if not isinstance(folded.get(key), str):
            raise Dropped(f'{key} must be a string, got {folded.get(key)!r}')
    if folded['ownerkind'] != OWNER_KIND:
        raise Dropped(f'ownerKind {folded["ownerkind"]!r} is not {OWNER_KIND!r}')
    if (folded['namespace'], folded['ownername']) != (namespace, job):
        raise Dropped(f'job {folded["namespace"]}/{folded["ownername"]} is not {namespace}/{job}')
    stage = STAGE_OF_KIND.get(folded['kind'].lower())
    type_ = TYPE_OF_STATUS.get(folded['status'].lower())
    if stage is None:
        raise Dropped(f'kind {folded["kind"]!r} is not one of {tuple(STAGE_OF_KIND)}')
    if type_ is None:
        raise Dropped(f'status {folded["status"]!r} is not one of {tuple(TYPE_OF_STATUS)}')
    owner_info = folded.get('ownerinfo')
    if owner_info is not None and not isinstance(owner_info, dict):
        raise Dropped(f'ownerInfo must be an object, got {owner_info!r}')
    try:
        data = condition_data(output={'models': folded.get('results')})
    except DataError as e:
        raise Dropped(f'GM cannot decode the results: {e}') from e
    models = tuple(json.loads(data)['output'].get('models', []))
    return Report(folded['name'], stage, type_, data, models)


class LCServer:
    """The endpoint on ``host`` (ephemeral port by default); ``url`` is the worker's LC_SERVER."""

    def __init__(
        self,
        namespace: str,
        job: str,
        on_report: Callable[[Report], None],
        host: str = '127.0.0.1',
        port: int = 0,
    ) -> None:
        self.namespace = namespace
        self.job = job
        self.on_report = on_report
        self.dropped: list[tuple[dict, str]] = []
        self._server = _Server((host, port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name='lc-server', daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f'http://{host}:{port}'

    def start(self) -> LCServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> LCServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def handle(self, body: Any) -> None:
        try:
            report = to_report(body, self.namespace, self.job)
        except Dropped as e:
            log.warning(
                'report from %r dropped (answered 200 as Sedna does): %s', body.get('name'), e
            )
            self.dropped.append((body, str(e)))
            return
        self.on_report(report)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        log.debug('%s %s', self.address_string(), format % args)

    @property
    def raw_path(self) -> str:
        # http.server collapses a leading '//' in self.path; Go's mux sees the raw one
        parts = self.requestline.split()
        return parts[1] if len(parts) >= 2 else self.path

    def _reply(self, status: int, message: str = 'OK') -> None:
        payload = json.dumps({'Status': status, 'Message': message}).encode()
        self.send_response(status)
        if status == 301:
            self.send_header('Location', re.sub('/{2,}', '/', self.raw_path))
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> bytes:
        length = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(length) if length else b''

    def _not_post(self) -> None:
        self._body()
        if '//' in self.raw_path:
            self._reply(301, 'Moved Permanently')
        else:
            self._reply(405, f'{self.command} not allowed')

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_post  # noqa: N815 - stdlib naming

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        body = self._body()
        if '//' in self.raw_path:
            return self._reply(301, 'Moved Permanently')
        match = _PATH_RE.match(self.raw_path)
        if match is None:
            return self._reply(404, 'Not Found')
        content_type = (self.headers.get('Content-Type') or '').split(';')[0].strip()
        if content_type != 'application/json':
            return self._reply(415, f'unsupported Content-Type {content_type!r}')
        try:
            report = decode_body(body)
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError included
            return self._reply(400, f'unreadable body: {e}')
        if not isinstance(report, dict):
            return self._reply(400, 'body is not a JSON object')
        name = {str(k).lower(): v for k, v in report.items()}.get('name')
        if name != match.group(1):
            return self._reply(400, f'name {name!r} does not match the path')
        self.server.lc.handle(report)
        return self._reply(200)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], lc: LCServer) -> None:
        super().__init__(address, _Handler)
        self.lc = lc
