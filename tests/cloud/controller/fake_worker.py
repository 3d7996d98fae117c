"""A fake Sedna train/eval worker for the controller tests (run as a script, never imported).

``python fake_worker.py train|eval``; ``FAKE_MODE`` (from the job template's env) picks the
behaviour: ``ok`` writes ``OUTPUT_URL/index.pkl`` (host path or S3) and reports ``completed``;
``fail`` reports ``failed``; ``crash`` exits 3; ``sigkill`` kills itself; ``silent`` exits 0
without a report; ``hang`` sleeps until killed. Every run records its environment in
``FAKE_ENV_DIR/<name>.json``. Like a real worker (PROTOCOL.md §4.2), it strips
``DATA_PATH_PREFIX`` from the host paths it reports and records.
"""

import json
import os
import signal
import sys
import time
import urllib.request

from robo_lifelong.transfer.storage import S3Config, open_storage

kind = sys.argv[1]
mode = os.environ.get('FAKE_MODE', 'ok')
name = os.environ['WORKER_NAME']
env_dir = os.environ.get('FAKE_ENV_DIR')
if env_dir:  # atomically: a test may wait for the file to appear
    with open(os.path.join(env_dir, name + '.json.tmp'), 'w') as f:
        json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, f)
    os.rename(os.path.join(env_dir, name + '.json.tmp'), os.path.join(env_dir, name + '.json'))


def report(status, results=None):
    body = {
        'name': name,
        'namespace': os.environ['NAMESPACE'],
        'ownerName': os.environ['JOB_NAME'],
        'ownerKind': 'lifelonglearningjob',
        'kind': kind,
        'status': status,
    }
    if results:
        body['results'] = results
    request = urllib.request.Request(
        f'{os.environ["LC_SERVER"]}/sedna/workers/{name}/info',
        data=json.dumps(body).encode(),
        headers={'Content-Type': 'application/json'},
        method='POST',
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


if mode == 'crash':
    sys.exit(3)
if mode == 'sigkill':
    os.kill(os.getpid(), signal.SIGKILL)
if mode == 'hang':
    time.sleep(3600)
if mode == 'fail':
    report('failed')
    sys.exit(0)


def host(url):
    prefix = os.environ.get('DATA_PATH_PREFIX', '').rstrip('/')
    return url[len(prefix) :] if prefix and url.startswith(prefix + '/') else url


store = open_storage(os.environ['OUTPUT_URL'], S3Config.from_environ(os.environ))  # path or s3://
models = ';'.join(host(u) for u in os.environ.get('MODEL_URLS', '').split(';') if u)
artefact = {'kind': kind, 'worker': name, 'models': models}
store.write_bytes('index.pkl', json.dumps(artefact).encode())
url = host(store.url_for('index.pkl'))
if mode == 'silent':
    sys.exit(0)
if kind == 'train':
    report('completed', [{'format': 'pkl', 'url': url, 'metrics': None}])
else:
    report(
        'completed',
        [
            {
                'format': 'pkl',
                'url': url,
                'metrics': {'accuracy': 0.875},
                'current_metric': {'sunny': {'miou': 0.5}},
                'classes': ['road', 'curb'],
                'number_of_labeled_unseen_sample': 3,
                'ownerInfo': {'dropped': 'by GM'},
            }
        ],
    )
