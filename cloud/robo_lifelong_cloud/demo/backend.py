"""Where the demo keeps the dataset and the job's outputs: a local directory, or S3.

``--storage s3`` uses the endpoint in the environment when ``S3_ENDPOINT_URL`` is set (with
``ACCESS_KEY_ID``/``SECRET_ACCESS_KEY``, the names Sedna injects; the bucket must exist), else it
starts a loopback SeaweedFS server for the run and stops it at the end. The manifests then get
the ``s3-cred`` Secret and ``credentialName`` exactly as a user would write them for Sedna.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from robo_lifelong.errors import ConfigError
from robo_lifelong.transfer.storage import S3Config, open_storage
from robo_lifelong_cloud.controller.manifests import Manifests, Secret
from robo_lifelong_cloud.seaweedfs import SeaweedS3

BUCKET = 'robo-lifelong'
SECRET_NAME = 's3-cred'
S3_VARIABLES = ('S3_ENDPOINT_URL', 'ACCESS_KEY_ID', 'SECRET_ACCESS_KEY')


@dataclass(frozen=True)
class Backend:
    storage_url: str  # the Dataset's directory = the bridge's storage root
    output_dir: str  # the job's outputDir
    s3: S3Config | None = None  # S3 endpoint and keys; None for local storage

    def storage(self, url: str | None = None):
        return open_storage(url or self.storage_url, self.s3)


def with_credentials(manifests: Manifests, backend: Backend) -> Manifests:
    """The manifests with the ``s3-cred`` Secret for ``backend`` (unchanged for local storage)."""
    if backend.s3 is None:
        return manifests
    endpoint = urlsplit(backend.s3.endpoint_url)
    secret = Secret(
        SECRET_NAME,
        {
            's3-endpoint': endpoint.netloc,
            's3-usehttps': '1' if endpoint.scheme == 'https' else '0',
        },
        {
            'ACCESS_KEY_ID': backend.s3.access_key_id,
            'SECRET_ACCESS_KEY': backend.s3.secret_access_key,
        },
    )
    dataset, job = copy.deepcopy(manifests.dataset), copy.deepcopy(manifests.job)
    dataset['spec']['credentialName'] = job['spec']['credentialName'] = SECRET_NAME
    secrets = {**manifests.secrets, SECRET_NAME: secret}
    return Manifests(dataset, job, secrets, manifests.source)


def upload_tree(directory: Path, backend: Backend) -> int:
    """Copy every file below ``directory`` to the storage root, same relative keys."""
    storage = backend.storage()
    files = sorted(p for p in directory.rglob('*') if p.is_file())
    for path in files:
        storage.upload_file(path, path.relative_to(directory).as_posix())
    return len(files)


@contextmanager
def open_backend(kind: str, out: Path) -> Iterator[Backend]:
    if kind == 'local':
        yield Backend(str(out / 'storage'), str(out / 'cloud'))
        return
    if kind != 's3':
        raise ConfigError(f'storage must be local or s3, got {kind!r}')
    run = time.strftime('%Y%m%d-%H%M%S')
    if os.environ.get('S3_ENDPOINT_URL'):
        missing = [k for k in S3_VARIABLES if not os.environ.get(k)]
        if missing:
            raise ConfigError(f'S3_ENDPOINT_URL is set but {", ".join(missing)} not')
        base = f's3://{BUCKET}/demo-{run}'
        yield Backend(f'{base}/data', f'{base}/out', S3Config.from_environ(os.environ))
        return
    shutil.rmtree(out / 'seaweedfs', ignore_errors=True)  # each run starts empty
    with SeaweedS3(out / 'seaweedfs') as server:
        server.make_bucket(BUCKET)
        base = f's3://{BUCKET}/demo-{run}'
        yield Backend(f'{base}/data', f'{base}/out', S3Config.from_environ(server.env))
