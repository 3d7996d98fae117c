"""Bridge: upload throughput of spooled 240x424 RGB-D samples to a loopback SeaweedFS (1 and 4
parallel uploads), backlog drain time, delivery while ~30 % of the requests fail, and CPU use of
the idle bridge node.

A sample is what the perception node spools: rgb.png and depth.png of a simulator frame (PNG
level 1, as ``collection`` writes them) plus meta.json; the uploader verifies each object and
appends the sample to the shared unlabeled index with a conditional write, so these numbers
include that read-modify-write. The server shares the machine's 2 cores with the client; a
remote endpoint is bounded by the network instead.

Faults: both runs go through tests/fakes/fault_proxy.py, one relaying everything, one failing a
seeded 30 % of the requests (503, connection reset, truncated reply, taking turns). Each failed
request must be tried again, so the ideal is the fault-free rate times the success probability
(0.7); a truncated PUT costs more than one request (it landed: the retry's 412 is followed by a
read-back). Before issue 18 the rate fell to ~5 % of the fault-free one (botocore's backoff on
top of ours, every file of a sample re-checked after any failure), or the upload thread died on
the first truncated body.

Targets: the idle node uses < 1 % of a core, a 1,000-sample backlog (a long outage) drains in
under 5 minutes, and with 30 % of the requests failing delivery keeps at least half of the ideal
rate, with every sample in the index exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import psutil

from robo_lifelong.sim.world import CampusWorld
from robo_lifelong.transfer.spool import Spool, make_sample_id
from robo_lifelong.transfer.storage import S3Config, join, open_storage
from robo_lifelong.transfer.uploader import (
    UNLABELED_INDEX,
    UPLOAD_S3_ATTEMPTS,
    UploadConfig,
    Uploader,
)
from tests.fakes.fault_proxy import Fault, FaultProxy
from tests.fakes.seaweedfs import SeaweedS3

PARALLEL = (1, 4)
TARGET_IDLE_CPU_PERCENT = 1.0
TARGET_DRAIN_1000_S = 300.0
FAULT_RATE = 0.3
# share of the ideal faulted rate (fault-free rate x success probability) to keep
TARGET_FAULTED_SHARE_OF_IDEAL = 0.5
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def _frames(count: int) -> list[dict[str, bytes]]:
    world = CampusWorld(seed=0)
    frames = []
    for i in range(count):
        frame = world.random_frame('sunny', i)
        rgb = cv2.imencode('.png', cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR), _PNG)[1]
        depth = cv2.imencode('.png', frame.depth_mm, _PNG)[1]
        frames.append({'rgb.png': rgb.tobytes(), 'depth.png': depth.tobytes()})
    return frames


def _fill(root: Path, frames: list[dict[str, bytes]], count: int) -> Spool:
    spool = Spool(root, 1 << 40, 1 << 20)
    t0 = time.time()
    for i in range(count):
        meta = {'stamp': t0 + i * 0.1, 'robot_id': 'bench', 'height': 240, 'width': 424}
        spool.put(make_sample_id('bench', t0 + i * 0.1), frames[i % len(frames)], meta)
    return spool


def _drain(
    server: SeaweedS3, url: str, spool: Spool, parallel: int, endpoint_url: str | None = None
) -> dict:
    count, size = spool.stat().count, spool.stat().bytes
    env = dict(server.env, S3_ENDPOINT_URL=endpoint_url or server.endpoint_url)
    # opened as the bridge opens its store
    store = open_storage(url, S3Config.from_environ(env), attempts=UPLOAD_S3_ATTEMPTS)
    uploader = Uploader(spool, store, UploadConfig('bench', parallel=parallel))
    started = time.perf_counter()
    uploaded = uploader.drain()
    elapsed = time.perf_counter() - started
    return {
        'parallel': parallel,
        'samples': uploaded,
        'complete': uploaded == count and spool.stat().count == 0,
        'seconds': round(elapsed, 2),
        'samples_per_s': round(uploaded / elapsed, 2),
        'mb_per_s': round(size / 1e6 / elapsed, 2),
    }


def _index_duplicates(server: SeaweedS3, url: str) -> tuple[int, int]:
    store = open_storage(url, S3Config.from_environ(server.env))
    data, _ = store.read_with_etag(UNLABELED_INDEX)
    ids = [line.split()[0] for line in (data or b'').decode().splitlines() if line.strip()]
    return len(ids), sum(n - 1 for n in Counter(ids).values())


def _faulted(
    server: SeaweedS3, bucket: str, tmp: Path, frames: list[dict[str, bytes]], count: int
) -> list[dict]:
    """Fault-free and faulted delivery through the proxy, per parallel setting."""
    runs = []
    with FaultProxy(server.ports['s3']) as proxy:
        for parallel in PARALLEL:
            result = {'parallel': parallel}
            for name in ('fault_free', 'faulted'):
                if name == 'faulted':
                    proxy.set_faults(tuple(Fault), rate=FAULT_RATE, seed=parallel)
                before = Counter(proxy.injected)
                url = join(bucket, f'faults-{name}-p{parallel}')
                spool = _fill(tmp / f'faults-{name}-p{parallel}', frames, count)
                run = _drain(server, url, spool, parallel, endpoint_url=proxy.url)
                proxy.clear()
                injected = {f.value: proxy.injected[f] - before[f] for f in Fault}
                lines, duplicates = _index_duplicates(server, url)
                result[name] = dict(
                    run, index_lines=lines, duplicates=duplicates, injected=injected
                )
            share = result['faulted']['samples_per_s'] / result['fault_free']['samples_per_s']
            result['faulted_vs_fault_free'] = round(share, 3)
            result['ideal'] = 1 - FAULT_RATE
            runs.append(result)
    return runs


def _idle_cpu(tmp: Path, seconds: float) -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(190 + os.getpid() % 10))
    env.setdefault('AMENT_PREFIX_PATH', sys.prefix)
    params = {
        'spool_dir': tmp / 'idle-spool',
        'storage_url': tmp / 'idle-store',
        'model_url': tmp / 'deploy' / 'index.pkl',
        'models_dir': tmp / 'models',
    }
    args = sum((['-p', f'{k}:={v}'] for k, v in params.items()), [])
    proc = subprocess.Popen(
        [sys.executable, '-m', 'robo_lifelong.nodes.bridge_node', '--ros-args', *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(4.0)  # start-up (imports, DDS discovery) is not idle time
        process = psutil.Process(proc.pid)
        before = process.cpu_times()
        time.sleep(seconds)
        after = process.cpu_times()
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(15)
    busy = (after.user - before.user) + (after.system - before.system)
    return {
        'seconds': seconds,
        'cpu_percent_of_one_core': round(100 * busy / seconds, 3),
        'node_alive': alive,
    }


def run(quick: bool = False) -> dict:
    per_run = 20 if quick else 100
    backlog = 100 if quick else 1000
    frames = _frames(10)
    with (
        tempfile.TemporaryDirectory(prefix='bench-bridge-') as tmp_name,
        SeaweedS3(Path(tmp_name) / 'weed') as server,
    ):
        tmp = Path(tmp_name)
        bucket = server.make_bucket('bench-bridge')
        _drain(server, join(bucket, 'warmup'), _fill(tmp / 'warm', frames, 5), 1)
        runs = [
            _drain(server, join(bucket, f'p{p}'), _fill(tmp / f'spool{p}', frames, per_run), p)
            for p in PARALLEL
        ]
        best = max(
            PARALLEL, key=lambda p: next(r['samples_per_s'] for r in runs if r['parallel'] == p)
        )
        drain = _drain(
            server, join(bucket, 'backlog'), _fill(tmp / 'backlog', frames, backlog), best
        )
        faults = _faulted(server, bucket, tmp, frames, 30 if quick else 150)
        idle = _idle_cpu(tmp, 5.0 if quick else 10.0)
    sample_bytes = sum(len(b) for b in frames[0].values())
    drain_1000_s = drain['seconds'] * 1000 / backlog
    faults_ok = all(
        r['faulted']['complete']
        and r['faulted']['duplicates'] == 0
        and r['faulted']['index_lines'] == r['faulted']['samples']
        and r['faulted_vs_fault_free'] >= TARGET_FAULTED_SHARE_OF_IDEAL * r['ideal']
        for r in faults
    )
    return {
        'sample': '240x424 sim frame: rgb.png + 16-bit depth.png (PNG level 1) + meta.json',
        'sample_bytes_approx': sample_bytes,
        'throughput': runs,
        'backlog_drain': dict(drain, backlog=backlog),
        'drain_1000_samples_s': round(drain_1000_s, 1),
        'target_drain_1000_samples_s': TARGET_DRAIN_1000_S,
        'faults': {'rate': FAULT_RATE, 'kinds': [f.value for f in Fault], 'runs': faults},
        'target_faulted_share_of_ideal': TARGET_FAULTED_SHARE_OF_IDEAL,
        'idle': idle,
        'target_idle_cpu_percent': TARGET_IDLE_CPU_PERCENT,
        'target_met': bool(
            idle['node_alive']
            and idle['cpu_percent_of_one_core'] < TARGET_IDLE_CPU_PERCENT
            and drain['complete']
            and drain_1000_s < TARGET_DRAIN_1000_S
            and faults_ok
        ),
    }
