"""Worker -> Sedna LocalController report (PROTOCOL.md §4): the one message that moves the job.

``report(env, 'eval', 'completed', [model_result(url, metrics)])`` POSTs
``{LC_SERVER}/sedna/workers/{WORKER_NAME}/info`` with exactly the §4.2 body and returns once the
LC answered 200. The body is validated before sending, because the LC answers 200 even for
reports GM later drops (non-integer ``number_of_*``, non-numeric metrics) and a NaN makes the
whole body unreadable. Hand-written on urllib.request: `requests` is not installed in the worker
image, and urllib lets us refuse redirects (a followed 301 turns the POST into a GET: report lost).
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import posixpath
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from robo_lifelong.errors import ReportError
from robo_lifelong_cloud.sedna_env import SednaEnv

log = logging.getLogger(__name__)

OWNER_KIND = 'lifelonglearningjob'
KINDS = ('train', 'eval', 'deploy')
# A worker reports only these; GM's ready/waiting would derail the stage machine (§8.3 item 11).
STATUSES = ('completed', 'failed')
ATTEMPTS = 5
BACKOFF_S = 1.0
TIMEOUT_S = 10.0
# Client errors that a retry cannot fix (bad body, wrong path/method/type, redirect).
_FINAL_STATUSES = frozenset({301, 302, 303, 307, 308, 400, 404, 405, 406, 415})


def model_result(
    url: str, metrics: Mapping[str, float] | None = None, **extra: Any
) -> dict[str, Any]:
    """A §1.6 Model object as Sedna sends it: ``format`` is the URL's extension without the dot.

    ``extra`` adds GM's optional keys (``current_metric``, ``classes``,
    ``number_of_labeled_unseen_sample`` ...).
    """
    return {
        'format': posixpath.splitext(url)[1].lstrip('.'),
        'url': url,
        'metrics': None if metrics is None else dict(metrics),
        **extra,
    }


def _strip_prefix(url: str, prefix: str) -> str:
    """Host paths are reported without the pod's mount prefix, so the LC can read them."""
    prefix = prefix.rstrip('/')
    if prefix and (url == prefix or url.startswith(prefix + '/')):
        return url[len(prefix) :] or '/'
    return url


def _clean(value: Any, where: str) -> Any:
    """JSON-ready copy: numpy scalars -> int/float, integral values stay integers, finite only."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ReportError(f'{where} is {number!r}: the LC cannot parse NaN/Infinity')
        return number
    if isinstance(value, (bytes, bytearray)):
        raise ReportError(f'{where} is bytes, not JSON text: {value!r}')
    if isinstance(value, Mapping):
        return {str(k): _clean(v, f'{where}.{k}') for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_clean(v, f'{where}[{i}]') for i, v in enumerate(value)]
    raise ReportError(f'{where} has a type JSON cannot hold: {value!r}')


def _check_model(model: dict[str, Any], where: str) -> None:
    # GM decodes these into typed Go fields; a mismatch drops the report after LC said 200
    for key in ('format', 'url'):
        if not isinstance(model.get(key), str):
            raise ReportError(f'{where}.{key} must be a string, got {model.get(key)!r}')
    metrics = model.get('metrics')
    if metrics is not None and not (
        isinstance(metrics, dict)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values())
    ):
        raise ReportError(f'{where}.metrics must be a flat {{name: number}} object: {metrics!r}')
    classes = model.get('classes')
    if classes is not None and not (
        isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    ):
        raise ReportError(f'{where}.classes must be a list of strings, got {classes!r}')
    for key, value in model.items():
        if key.startswith('number_of_'):
            if isinstance(value, float) and value.is_integer():
                model[key] = int(value)
            elif not isinstance(value, int) or isinstance(value, bool):
                raise ReportError(f'{where}.{key} must be an integer, got {value!r}')


def build_report(
    env: SednaEnv,
    kind: str,
    status: str,
    results: Sequence[Mapping[str, Any]] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The §4.2 body; ReportError if it is not one GM would accept."""
    if kind not in KINDS:
        raise ReportError(f'kind must be one of {KINDS}, got {kind!r}')
    if status not in STATUSES:
        raise ReportError(f'a worker reports only {STATUSES}, got status {status!r}')
    missing = [n for n in ('worker_name', 'namespace', 'job_name') if not getattr(env, n)]
    if missing:
        raise ReportError(f'cannot report without {", ".join(n.upper() for n in missing)}')
    if status == 'completed' and kind != 'deploy' and not results:
        # LC takes the models of the latest completed report: none stalls the job (§2.5)
        raise ReportError(f'a completed {kind} report needs results (the output model)')
    body: dict[str, Any] = {
        'name': env.worker_name,
        'namespace': env.namespace,
        'ownerName': env.job_name,
        'ownerKind': OWNER_KIND,
        'kind': kind,
        'status': status,
    }
    if results:
        cleaned = _clean([dict(m) for m in results], 'results')
        for i, model in enumerate(cleaned):
            _check_model(model, f'results[{i}]')
            model['url'] = _strip_prefix(model['url'], env.data_path_prefix)
        body['results'] = cleaned
    if reason:
        body['ownerInfo'] = {'reason': reason}
    return body


def report_url(env: SednaEnv) -> str:
    return f'{env.lc_server.rstrip("/")}/sedna/workers/{quote(env.worker_name, safe="")}/info'


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError for the 3xx itself


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(url: str, payload: bytes, timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=payload, method='POST', headers={'Content-Type': 'application/json'}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read().decode('utf-8', 'replace')
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode('utf-8', 'replace')


def report(
    env: SednaEnv,
    kind: str,
    status: str,
    results: Sequence[Mapping[str, Any]] | None = None,
    reason: str | None = None,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
    timeout_s: float = TIMEOUT_S,
) -> dict[str, Any]:
    """Send the report; return the body once the LC answered 200.

    Connection errors and other non-200 replies are retried ``attempts`` times with exponential
    backoff (``backoff_s``, doubling); replies a retry cannot change (400, 404, 405, 415, a
    redirect) fail at once. Raises ReportError when the report was not delivered.
    """
    body = build_report(env, kind, status, results, reason)
    payload = json.dumps(body, allow_nan=False, separators=(',', ':')).encode('utf-8')
    url = report_url(env)
    problem = ''
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            code, text = _post(url, payload, timeout_s)
        except OSError as e:  # URLError, refused, reset, timeout
            problem = f'{e}'
            log.warning('report to %s failed (try %d/%d): %s', url, attempt + 1, attempts, e)
            continue
        if code == 200:
            log.info('reported %s %s to %s', kind, status, url)
            return body
        problem = f'HTTP {code}: {text.strip()[:200]}'
        if code in _FINAL_STATUSES:
            break
        log.warning('report to %s got %s (try %d/%d)', url, problem, attempt + 1, attempts)
    raise ReportError(f'{kind} {status} report to {url!r} not delivered: {problem}')
