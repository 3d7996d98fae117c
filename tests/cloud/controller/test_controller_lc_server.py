"""The worker-report endpoint answers and drops reports like Sedna's LC/GM (PROTOCOL.md §4)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from robo_lifelong_cloud.controller.lc_server import LCServer, Report

NAME = 'train-worker-b7k2q'
GOOD = {
    'name': NAME,
    'namespace': 'default',
    'ownerName': 'robo-demo',
    'ownerKind': 'lifelonglearningjob',
    'kind': 'train',
    'status': 'completed',
    'results': [{'format': 'pkl', 'url': '/o/train/1/index.pkl', 'metrics': None}],
}


@pytest.fixture
def server() -> Iterator[tuple[LCServer, list[Report]]]:
    reports: list[Report] = []
    with LCServer('default', 'robo-demo', reports.append) as lc:
        yield lc, reports


def _post(
    lc: LCServer,
    body: bytes | dict,
    path: str = f'/sedna/workers/{NAME}/info',
    content_type: str | None = 'application/json',
    method: str = 'POST',
) -> tuple[int, dict]:
    host, port = lc.url.removeprefix('http://').split(':')
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {'Content-Type': content_type} if content_type else {}
    conn.request(method, path, payload, headers)
    response = conn.getresponse()
    reply = json.loads(response.read() or b'{}')
    conn.close()
    return response.status, reply


def test_good_report_is_accepted(server) -> None:
    lc, reports = server
    assert _post(lc, GOOD) == (200, {'Status': 200, 'Message': 'OK'})
    assert _post(lc, GOOD, content_type='application/json; charset=utf-8')[0] == 200
    assert _post(lc, GOOD, path=f'/sedna/workers/{NAME}/info/')[0] == 200
    assert len(reports) == 3
    report = reports[0]
    assert (report.worker, report.stage, report.type) == (NAME, 'Train', 'Completed')
    assert json.loads(report.data) == {
        'output': {'models': [{'format': 'pkl', 'url': '/o/train/1/index.pkl', 'classes': None}]}
    }


@pytest.mark.parametrize(
    ('kwargs', 'status'),
    [
        ({'content_type': 'Application/JSON'}, 415),
        ({'content_type': None}, 415),
        ({'content_type': 'application/x-www-form-urlencoded'}, 415),
        ({'body': {**GOOD, 'name': 'eval-worker-zzzzz'}}, 400),
        ({'body': b'{"name": "' + NAME.encode() + b'", "metrics": NaN}'}, 400),
        ({'body': b'{"name": "' + NAME.encode() + b'", "x": Infinity}'}, 400),
        ({'body': b'[1, 2]'}, 400),
        ({'body': b'{not json'}, 400),
        ({'method': 'GET'}, 405),
        ({'path': '/sedna/workers/x/status'}, 404),
        ({'path': f'//sedna/workers/{NAME}/info'}, 301),
    ],
)
def test_http_rejections(server, kwargs: dict, status: int) -> None:
    lc, reports = server
    body = kwargs.pop('body', GOOD)
    assert _post(lc, body, **kwargs)[0] == status
    assert reports == []


@pytest.mark.parametrize(
    'change',
    [
        {'status': 'running'},
        {'status': 'done'},
        {'kind': 'inference'},
        {'ownerKind': 'LifelongLearningJob'},
        {'ownerKind': 'incrementallearningjob'},
        {'ownerName': 'other-job'},
        {'namespace': 'other'},
        {'results': [{'url': 'u', 'number_of_model': 3.0}]},
        {'results': [{'url': 'u', 'metrics': {'accuracy': 'high'}}]},
        {'results': {'url': 'u'}},
        {'ownerInfo': 'text'},
    ],
)
def test_dropped_reports_still_get_200(server, change: dict) -> None:
    lc, reports = server
    assert _post(lc, {**GOOD, **change}) == (200, {'Status': 200, 'Message': 'OK'})
    assert reports == [] and len(lc.dropped) == 1


def test_keys_match_case_insensitively_and_trailing_data_is_ignored(server) -> None:
    lc, reports = server
    body = {k.upper(): v for k, v in GOOD.items()}
    assert _post(lc, json.dumps(body).encode() + b' {garbage')[0] == 200
    assert len(reports) == 1


def test_failed_report_has_no_data(server) -> None:
    lc, reports = server
    body = {k: v for k, v in GOOD.items() if k != 'results'} | {'status': 'failed'}
    assert _post(lc, body)[0] == 200
    assert (reports[0].type, reports[0].data, reports[0].models) == ('Failed', '{"output":{}}', ())
