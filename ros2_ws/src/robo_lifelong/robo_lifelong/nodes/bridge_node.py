"""bridge: the robot's single gateway to the cloud. Samples up (spool -> storage, then the
unlabeled index), models down (deploy pointer -> package verified once, installed in
``models_dir`` and made current in ``models_dir/current.json``, the record the perception node
loads from; ``model/update`` only tells people and tools which package became current).

Uploads and model downloads run in two supervised worker threads (``supervision``), so the
executor only publishes status; a ``unseen/sample`` event wakes the uploader at once instead of at
the next poll. No exception ends a worker: each is counted, reported (last error, failures in a
row, total) in bridge/status and /diagnostics, backed off and retried; a worker that is not alive
anyway is a /diagnostics ERROR naming it. Parameters: ``BridgeConfig``. Credentials come only from
the environment (Sedna's ``S3_ENDPOINT_URL``, ``ACCESS_KEY_ID``, ``SECRET_ACCESS_KEY`` or the AWS
variables) and are scrubbed from anything published or logged.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from std_msgs.msg import String

from robo_lifelong.errors import ConfigError
from robo_lifelong.nodes.parameters import declare_config
from robo_lifelong.nodes.qos import LATCHED_QOS, RELIABLE_QOS
from robo_lifelong.nodes.spin import run
from robo_lifelong.parameters import param
from robo_lifelong.supervision import FailureLog, Health, Level, SupervisedThread, health_summary
from robo_lifelong.transfer.model_sync import ModelSync, first_model_url
from robo_lifelong.transfer.spool import Spool
from robo_lifelong.transfer.storage import S3Config, open_storage
from robo_lifelong.transfer.uploader import (
    UNLABELED_INDEX,
    UPLOAD_S3_ATTEMPTS,
    UploadConfig,
    Uploader,
)

STATUS_TOPIC = 'bridge/status'
MODEL_UPDATE_TOPIC = 'model/update'
SAMPLE_EVENT_TOPIC = 'unseen/sample'
_SECRET_VARIABLES = (
    'SECRET_ACCESS_KEY',
    'ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'AWS_ACCESS_KEY_ID',
    'AWS_SESSION_TOKEN',
)
# the bridge only reads the spool; its bounds matter to the writer (perception)
_READER_BOUND = 1 << 62
_JOIN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class BridgeConfig:
    """The node's settings, each field a ROS parameter of that name, all read at start; the
    upload defaults are ``UploadConfig``'s."""

    spool_dir: str = field(
        default='spool', metadata=param('sample spool the perception node fills')
    )
    storage_url: str = field(
        default='storage',
        metadata=param('s3://bucket/prefix or a local directory (dataset root)'),
    )
    robot_id: str = field(
        default='robot', metadata=param('robot id in storage keys and diagnostics')
    )
    index_key: str = field(
        default=UNLABELED_INDEX,
        metadata=param('unlabeled sample index, relative to storage_url'),
    )
    model_url: str = field(
        default='',
        metadata=param(
            "deploy pointer (Sedna's <outputDir>/deploy/index.pkl) or package "
            'URL; empty: the MODEL_URLS environment variable; both empty: no model sync'
        ),
    )
    models_dir: str = field(
        default='models', metadata=param('where verified packages are installed')
    )
    upload_poll_s: float = field(
        default=1.0, metadata=param('spool check period when idle (s)', low=0.0)
    )
    model_poll_s: float = field(
        default=10.0, metadata=param('deploy pointer poll period (s)', low=0.0)
    )
    status_period_s: float = field(default=1.0, metadata=param('diagnostics period (s)', low=0.0))
    bandwidth_limit_bytes_per_s: int = field(
        default=int(UploadConfig.bandwidth_bytes_per_s),
        metadata=param('average upload rate limit, bytes/s; 0: none', low=0),
    )
    parallel_uploads: int = field(
        default=UploadConfig.parallel, metadata=param('concurrent sample uploads', low=1)
    )
    backoff_max_s: float = field(
        default=UploadConfig.backoff_max_s,
        metadata=param('longest wait between retries (s)', low=0.0),
    )

    def __post_init__(self) -> None:
        for name in ('upload_poll_s', 'model_poll_s', 'status_period_s', 'backoff_max_s'):
            if getattr(self, name) <= 0:
                raise ConfigError(f'parameter {name} must be > 0, got {getattr(self, name)!r}')


class BridgeNode(Node):
    def __init__(self) -> None:
        super().__init__('bridge')
        self.config = self._declare()
        self._secrets = [v for k in _SECRET_VARIABLES if len(v := os.environ.get(k, '')) >= 4]
        s3 = S3Config.from_environ(os.environ)  # read once: uploads and model sync share it
        self.spool = Spool(self.config.spool_dir, _READER_BOUND, _READER_BOUND)
        upload_config = UploadConfig(
            robot_id=self.config.robot_id,
            index_key=self.config.index_key,
            parallel=self.config.parallel_uploads,
            bandwidth_bytes_per_s=float(self.config.bandwidth_limit_bytes_per_s),
            backoff_max_s=self.config.backoff_max_s,
        )
        self.uploader = Uploader(
            self.spool,
            open_storage(self.config.storage_url, s3, attempts=UPLOAD_S3_ATTEMPTS),
            upload_config,
            FailureLog('bridge-upload', self.get_logger(), self._scrub),
        )
        self.model_sync = (
            ModelSync(self.config.model_url, self.config.models_dir, s3)
            if self.config.model_url
            else None
        )
        self._model_state = {'current': None, 'last_check': None}
        if self.model_sync is not None and self.model_sync.current is not None:
            self._model_state['current'] = str(self.model_sync.current.path)
        self._installed: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.status_pub = self.create_publisher(String, STATUS_TOPIC, 10)
        # an announcement, not a delivery: perception follows models_dir/current.json; latched,
        # so an observer that starts later still hears of the newest package
        self.model_pub = self.create_publisher(String, MODEL_UPDATE_TOPIC, LATCHED_QOS)
        self.create_subscription(String, SAMPLE_EVENT_TOPIC, self._on_sample, RELIABLE_QOS)
        self.create_timer(self.config.status_period_s, self._publish_status)
        self._upload_thread = SupervisedThread(
            'bridge-upload',
            lambda: self.uploader.step(self._stop, self.config.upload_poll_s, self._wake),
            self._stop,
            failures=self.uploader.failures,
            backoff_initial_s=upload_config.backoff_initial_s,
            backoff_max_s=upload_config.backoff_max_s,
        )
        self._model_thread = None
        if self.model_sync is not None:
            # a failed poll waits for the next one, as a successful one does
            self._model_thread = SupervisedThread(
                'bridge-models',
                self._model_step,
                self._stop,
                failures=FailureLog('bridge-models', self.get_logger(), self._scrub),
                backoff_initial_s=self.config.model_poll_s,
                backoff_max_s=self.config.model_poll_s,
            )
        self._threads = [t for t in (self._upload_thread, self._model_thread) if t is not None]
        for thread in self._threads:
            thread.start()
        self.get_logger().info(
            f'bridge {self.config.robot_id}: spool {self.config.spool_dir} -> '
            f'{self.config.storage_url}; models from {self.config.model_url or "(disabled)"}'
        )

    def _declare(self) -> BridgeConfig:
        config = declare_config(self, BridgeConfig)
        if config.model_url:
            return config
        # where Sedna's deploy worker names the model
        return replace(config, model_url=first_model_url(os.environ.get('MODEL_URLS', '')))

    # -- worker threads -------------------------------------------------------------------------

    def _model_step(self) -> None:
        """One poll of the deploy pointer; a failure raises to the supervisor, which counts it
        and waits model_poll_s."""
        try:
            package = self.model_sync.poll()
        finally:
            self._model_state['last_check'] = _iso(time.time())
        if package is not None:
            self._model_state['current'] = str(package.path)
            self._installed.put(str(package.path))
        self._stop.wait(self.config.model_poll_s)

    def _on_sample(self, _msg: String) -> None:
        self._wake.set()

    # -- status ---------------------------------------------------------------------------------

    def _publish_status(self) -> None:
        while not self._installed.empty():
            path = self._installed.get()
            self.model_pub.publish(String(data=path))
            self.get_logger().info(f'announced model package {path}')
        status = self._status()
        self.status_pub.publish(String(data=json.dumps(status, sort_keys=True)))
        self.diagnostics_pub.publish(self._diagnostics(status))

    def _status(self) -> dict:
        backlog = self.spool.stat()
        uploads = asdict(self.uploader.status())
        for key in ('last_upload', 'last_error_time'):
            uploads[key] = _iso(uploads[key])
        uploads['last_error'] = self._scrub(uploads['last_error'] or '') or None
        uploads['thread'] = _thread_json(self._upload_thread.health())
        models = dict(self._model_state, enabled=self._model_thread is not None)
        if self._model_thread is not None:
            health = self._model_thread.health()
            models.update(
                failures=health.failures,
                total_failures=health.total_failures,
                last_error=health.last_error,
                last_error_time=_iso(health.last_error_time),
                thread=_thread_json(health),
            )
        return {
            'robot_id': self.config.robot_id,
            'storage_url': self.config.storage_url,
            'backlog': {
                'count': backlog.count,
                'bytes': backlog.bytes,
                'oldest_age_s': backlog.oldest_age_s,
            },
            'uploads': uploads,
            'models': models,
        }

    def _diagnostics(self, status: dict) -> DiagnosticArray:
        backlog, uploads = status['backlog'], status['uploads']
        waiting = (
            f'{backlog["count"]} samples waiting (oldest {backlog["oldest_age_s"] or 0:.0f} s)'
        )
        level, problem = health_summary([self._upload_thread.health()])
        if level is Level.OK and uploads['corrupt']:
            level, problem = Level.WARN, f'{uploads["corrupt"]} corrupt samples kept'
        upload_status = DiagnosticStatus(
            level=bytes([level]),
            name='bridge: uploads',
            message=f'{problem}; {waiting}' if problem else waiting,
            hardware_id=self.config.robot_id,
            values=_values(
                {
                    **{f'backlog_{k}': v for k, v in backlog.items()},
                    **{k: v for k, v in uploads.items() if k != 'thread'},
                    'thread_alive': uploads['thread']['alive'],
                    'storage_url': self.config.storage_url,
                }
            ),
        )
        models = status['models']
        if self._model_thread is None:
            level, message = Level.OK, 'disabled'
        else:
            level, message = health_summary([self._model_thread.health()])
            message = message or f'ok; current {models["current"] or "none"}'
        model_status = DiagnosticStatus(
            level=bytes([level]),
            name='bridge: models',
            message=message,
            hardware_id=self.config.robot_id,
            values=_values(
                {
                    **{k: v for k, v in models.items() if k != 'thread'},
                    'thread_alive': models.get('thread', {}).get('alive', ''),
                }
            ),
        )
        msg = DiagnosticArray(status=[upload_status, model_status])
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, '***')
        return text

    def destroy_node(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(_JOIN_TIMEOUT_S)  # an upload cut short is redone after a restart
        self.spool.close()
        status = self.uploader.status()
        self.get_logger().info(
            f'bridge stopped: uploaded {status.uploaded} samples ({status.uploaded_bytes} bytes), '
            f'{self.spool.stat().count} left in the spool'
        )
        super().destroy_node()


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, timezone.utc).isoformat()


def _thread_json(health: Health) -> dict:
    return {'name': health.name, 'alive': health.alive}


def _values(items: dict) -> list[KeyValue]:
    return [KeyValue(key=k, value='' if v is None else str(v)) for k, v in items.items()]


def main(args: list[str] | None = None) -> int:
    return run(BridgeNode, 'bridge', args)


if __name__ == '__main__':
    sys.exit(main())
