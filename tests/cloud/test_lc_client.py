"""The worker's LC report client against the fake LC, and the fake LC's own parsing rules."""

from __future__ import annotations

import http.client
import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from robo_lifelong.errors import ReportError
from robo_lifelong_cloud import lc_client
from robo_lifelong_cloud.lc_client import model_result, report
from robo_lifelong_cloud.sedna_env import SednaEnv
from tests.fakes.fake_lc import FakeLC
from tests.fakes.seaweedfs import free_ports


def sedna_env(lc_server: str, worker: str = 'train-worker-b7k2q', **extra: str) -> SednaEnv:
    return SednaEnv.from_environ(
        {
            'NAMESPACE': 'default',
            'JOB_NAME': 'robo-demo',
            'WORKER_NAME': worker,
            'LC_SERVER': lc_server,
            **extra,
        }
    )


def test_train_completed_is_exactly_the_sedna_body(fake_lc: FakeLC) -> None:
    url = 's3://kubeedge/robo/out/robo-demo/train/1/index.pkl'
    report(sedna_env(fake_lc.url), 'train', 'completed', [model_result(url)])
    assert fake_lc.accepted == [
        {
            'name': 'train-worker-b7k2q',
            'namespace': 'default',
            'ownerName': 'robo-demo',
            'ownerKind': 'lifelonglearningjob',
            'kind': 'train',
            'status': 'completed',
            'results': [{'format': 'pkl', 'url': url, 'metrics': None}],
        }
    ]
    (exchange,) = fake_lc.exchanges
    assert exchange.method == 'POST'
    assert exchange.path == '/sedna/workers/train-worker-b7k2q/info'
    assert exchange.headers['Content-Type'] == 'application/json'


def test_eval_completed_with_metrics_keeps_integers_integral(fake_lc: FakeLC) -> None:
    env = sedna_env(fake_lc.url, worker='eval-worker-x9m4t')
    result = model_result(
        's3://b/o/robo-demo/eval/1/pointer.json',
        {'miou': np.float32(0.5), 'pixel_accuracy': 0.87},
        current_metric={'sunny': {'miou': np.float64(0.61)}},
        classes=['road', 'curb'],
        number_of_labeled_unseen_sample=np.int64(3),
        number_of_model=2.0,
    )
    sent = report(env, 'eval', 'completed', [result])
    (accepted,) = fake_lc.accepted
    assert accepted == sent
    model = accepted['results'][0]
    assert model['format'] == 'json'
    assert model['metrics'] == {'miou': 0.5, 'pixel_accuracy': 0.87}
    raw = fake_lc.exchanges[0].body.decode()
    assert '"number_of_labeled_unseen_sample":3,' in raw and '"number_of_model":2' in raw
    assert fake_lc.dropped == []


def test_failed_report_carries_the_reason_and_no_results(fake_lc: FakeLC) -> None:
    report(sedna_env(fake_lc.url), 'train', 'failed', reason='dataset is empty')
    (accepted,) = fake_lc.accepted
    assert accepted['status'] == 'failed'
    assert accepted['ownerInfo'] == {'reason': 'dataset is empty'}
    assert 'results' not in accepted


def test_trailing_slash_lc_server_gives_no_double_slash(fake_lc: FakeLC) -> None:
    report(sedna_env(fake_lc.url + '/'), 'train', 'failed')
    assert [e.path for e in fake_lc.exchanges] == ['/sedna/workers/train-worker-b7k2q/info']
    assert len(fake_lc.accepted) == 1


def test_data_path_prefix_is_stripped_from_local_urls(fake_lc: FakeLC) -> None:
    env = sedna_env(fake_lc.url, DATA_PATH_PREFIX='/home/data')
    results = [
        model_result('/home/data/data/ll/out/job/train/1/index.pkl'),
        model_result('/home/database/x.pkl'),  # shares the prefix string, not the directory
    ]
    report(env, 'train', 'completed', results)
    urls = [m['url'] for m in fake_lc.accepted[0]['results']]
    assert urls == ['/data/ll/out/job/train/1/index.pkl', '/home/database/x.pkl']


def test_retries_until_the_lc_comes_up(caplog: pytest.LogCaptureFixture) -> None:
    (port,) = free_ports(1)
    lc = FakeLC(port=port)

    class StartTheLcAfterTheFirstTry(logging.Handler):
        """The LC comes up right after the first try failed: an event, not a timer."""

        def emit(self, record: logging.LogRecord) -> None:
            if 'try 1/5' in record.getMessage():
                lc.start()

    logger = logging.getLogger(lc_client.__name__)
    starter = StartTheLcAfterTheFirstTry()
    logger.addHandler(starter)
    try:
        with caplog.at_level(logging.WARNING, logger=lc_client.__name__):
            report(sedna_env(lc.url), 'train', 'failed', backoff_s=0.3)
    finally:
        logger.removeHandler(starter)
        lc.stop()
    assert len(lc.accepted) == 1
    failed = [r.getMessage() for r in caplog.records if 'failed (try' in r.getMessage()]
    assert len(failed) == 1 and 'try 1/5' in failed[0]  # one failed try, then delivered


def test_retries_server_errors(fake_lc: FakeLC) -> None:
    fake_lc.fail_next = 2
    report(sedna_env(fake_lc.url), 'train', 'failed', backoff_s=0.01)
    assert [e.status for e in fake_lc.exchanges] == [503, 503, 200]


def test_gives_up_with_a_clear_error_when_the_lc_stays_down(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (port,) = free_ports(1)
    waits: list[float] = []  # the back-off sleeps, recorded instead of slept
    monkeypatch.setattr(lc_client, 'time', SimpleNamespace(sleep=waits.append))
    with caplog.at_level(logging.WARNING, logger=lc_client.__name__):
        with pytest.raises(ReportError, match=f'127.0.0.1:{port}.*not delivered'):
            report(sedna_env(f'http://127.0.0.1:{port}'), 'train', 'failed', backoff_s=0.01)
    # bounded: 5 tries, doubling a tiny backoff in between
    tries = [r.getMessage() for r in caplog.records if 'failed (try' in r.getMessage()]
    assert [f'try {i}/5' in m for i, m in enumerate(tries, 1)] == [True] * 5
    assert waits == pytest.approx([0.01, 0.02, 0.04, 0.08])


def test_redirect_is_not_followed_into_a_get(fake_lc: FakeLC) -> None:
    with pytest.raises(ReportError, match='HTTP 301'):
        report(sedna_env(fake_lc.url + '//lc'), 'train', 'failed', backoff_s=0.01)
    assert [(e.method, e.status) for e in fake_lc.exchanges] == [('POST', 301)]


def test_client_errors_are_not_retried(fake_lc: FakeLC) -> None:
    with pytest.raises(ReportError, match='HTTP 404'):
        report(sedna_env(fake_lc.url + '/wrong'), 'train', 'failed', backoff_s=0.01)
    assert len(fake_lc.exchanges) == 1


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        ({'status': 'running'}, 'status'),
        ({'status': 'ready'}, 'status'),
        ({'kind': 'inference'}, 'kind'),
        ({'results': None}, 'needs results'),
        ({'results': [model_result('s3://b/x.pkl', {'miou': float('nan')})]}, 'NaN'),
        ({'results': [model_result('s3://b/x.pkl', {'miou': np.float32('inf')})]}, 'NaN'),
        ({'results': [model_result('s3://b/x.pkl', {'miou': 'high'})]}, 'metrics'),
        ({'results': [model_result('s3://b/x.pkl', number_of_model=2.5)]}, 'integer'),
        ({'results': [model_result('s3://b/x.pkl', classes=[1, 2])]}, 'classes'),
    ],
)
def test_invalid_reports_are_refused_before_sending(
    fake_lc: FakeLC, kwargs: dict, match: str
) -> None:
    args = {'kind': 'eval', 'status': 'completed', 'results': [model_result('s3://b/x.pkl')]}
    args.update(kwargs)
    with pytest.raises(ReportError, match=match):
        report(sedna_env(fake_lc.url), **args)
    assert fake_lc.exchanges == []


# --- the fake LC itself: each malformed shape gets what Sedna's LC/GM would do with it ---

GOOD = {
    'name': 'w-1',
    'namespace': 'default',
    'ownerName': 'job',
    'ownerKind': 'lifelonglearningjob',
    'kind': 'eval',
    'status': 'completed',
    'results': [{'format': 'pkl', 'url': 's3://b/x.pkl', 'metrics': {'a': 1}, 'classes': None}],
}


def send(
    lc: FakeLC,
    body: bytes | dict,
    path: str = '/sedna/workers/w-1/info',
    method: str = 'POST',
    content_type: str | None = 'application/json',
) -> int:
    payload = json.dumps(body).encode() if isinstance(body, dict) else body
    connection = http.client.HTTPConnection('127.0.0.1', lc.port, timeout=5)
    try:
        headers = {} if content_type is None else {'Content-Type': content_type}
        connection.request(method, path, body=payload, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_fake_accepts_a_good_report_and_sedna_variants(fake_lc: FakeLC) -> None:
    assert send(fake_lc, GOOD) == 200
    assert send(fake_lc, GOOD, content_type='application/json; charset=utf-8') == 200
    assert send(fake_lc, GOOD, path='/sedna/workers/w-1/info/') == 200
    assert send(fake_lc, json.dumps(GOOD).encode() + b' trailing') == 200  # first value only
    assert send(fake_lc, {**{k: v for k, v in GOOD.items() if k != 'name'}, 'NAME': 'w-1'}) == 200
    assert len(fake_lc.accepted) == 5 and fake_lc.dropped == []


@pytest.mark.parametrize(
    ('request_kwargs', 'status'),
    [
        ({'method': 'GET', 'body': b''}, 405),
        ({'method': 'PUT'}, 405),
        ({'path': '//sedna/workers/w-1/info'}, 301),
        ({'path': '/sedna/workers//w-1/info'}, 301),
        ({'path': '/sedna/workers/w-1/status'}, 404),
        ({'content_type': None}, 415),
        ({'content_type': 'Application/JSON'}, 415),
        ({'content_type': 'application/x-www-form-urlencoded'}, 415),
        ({'path': '/sedna/workers/other/info'}, 400),
        ({'body': json.dumps(GOOD).replace('"a": 1', '"a": NaN').encode()}, 400),
        ({'body': json.dumps(GOOD).replace('"a": 1', '"a": Infinity').encode()}, 400),
        ({'body': b'[1, 2]'}, 400),
        ({'body': b'{"name": "w-1",'}, 400),
    ],
)
def test_fake_rejects_malformed_requests(
    fake_lc: FakeLC, request_kwargs: dict, status: int
) -> None:
    request_kwargs.setdefault('body', GOOD)
    assert send(fake_lc, **request_kwargs) == status
    assert fake_lc.accepted == []


def _with_model(**changes: object) -> dict:
    return {**GOOD, 'results': [{**GOOD['results'][0], **changes}]}


@pytest.mark.parametrize(
    ('body', 'reason'),
    [
        ({**GOOD, 'ownerKind': 'LifelongLearningJob'}, 'ownerKind'),
        ({**GOOD, 'ownerKind': 'incrementallearningjob'}, 'ownerKind'),
        ({**GOOD, 'kind': 'inference'}, 'kind'),
        ({**GOOD, 'status': 'running'}, 'status'),
        ({**GOOD, 'status': 'ready'}, 'status'),
        ({**GOOD, 'results': {'url': 'x'}}, 'results must be a list'),
        ({**GOOD, 'ownerInfo': 'oops'}, 'ownerInfo'),
        (_with_model(number_of_labeled_unseen_sample=3.0), 'integer'),
        (_with_model(number_of_model=1e3), 'integer'),
        (_with_model(metrics=[0.5]), 'metrics'),
        (_with_model(metrics={'a': 'high'}), 'metrics'),
        (_with_model(classes=['road', 1]), 'classes'),
        (_with_model(url=7), 'url'),
    ],
)
def test_fake_answers_200_but_drops_what_gm_rejects(
    fake_lc: FakeLC, body: dict, reason: str
) -> None:
    assert send(fake_lc, body) == 200
    assert fake_lc.accepted == []
    ((_body, why),) = fake_lc.dropped
    assert reason in why
