"""The demo's S3 backend hands its one S3Config to the manifests as Sedna's Secret, and the
controller reads the same config back from that Secret for its workers."""

from __future__ import annotations

from pathlib import Path

from robo_lifelong.transfer.storage import S3Config
from robo_lifelong_cloud.controller.manifests import load_manifests
from robo_lifelong_cloud.demo.backend import SECRET_NAME, Backend, with_credentials

MANIFESTS = Path(__file__).resolve().parents[2] / 'cloud' / 'manifests'


def test_the_secret_carries_the_backends_s3_config() -> None:
    s3 = S3Config('http://127.0.0.1:8333', access_key_id='AK42', secret_access_key='SK42')
    backend = Backend('s3://robo-lifelong/demo/data', 's3://robo-lifelong/demo/out', s3)
    manifests = with_credentials(load_manifests([MANIFESTS]), backend)
    secret = manifests.secret(manifests.job['spec']['credentialName'])
    assert secret is not None and secret.name == SECRET_NAME
    assert secret.annotations == {'s3-endpoint': '127.0.0.1:8333', 's3-usehttps': '0'}
    assert secret.s3_config() == s3
    assert 'SK42' not in repr(secret) and 'SK42' not in repr(backend)


def test_local_storage_needs_no_secret() -> None:
    manifests = load_manifests([MANIFESTS])
    assert with_credentials(manifests, Backend('/tmp/data', '/tmp/out')) is manifests
