"""Bridge: upload throughput of spooled 240x424 RGB-D samples to a loopback SeaweedFS (1 and 4
parallel uploads), backlog drain time, and CPU use of the idle bridge node.

A sample is what the perception node spools: rgb.png and depth.png of a simulator frame (PNG
level 1, as ``collection`` writes them) plus meta.json; the uploader verifies each object and
appends the sample to the shared unlabeled index with a conditional write, so these numbers
include that read-modify-write. The server shares the machine's 2 cores with the client; a
remote endpoint is bounded by the network instead. Targets: the idle node uses < 1 % of a core,
and a 1,000-sample backlog (a long outage) drains in under 5 minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import psutil

from robo_lifelong.sim.world import CampusWorld
from robo_lifelong.spool import Spool, make_sample_id
from robo_lifelong.storage import join, open_storage
from robo_lifelong.uploader import UploadConfig, Uploader
from tests.fakes.seaweedfs import SeaweedS3

PARALLEL = (1, 4)
TARGET_IDLE_CPU_PERCENT = 1.0
TARGET_DRAIN_1000_S = 300.0
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


def _drain(server: SeaweedS3, url: str, spool: Spool, parallel: int) -> dict:
    count, size = spool.stat().count, spool.stat().bytes
    uploader = Uploader(
        spool, open_storage(url, environ=server.env), UploadConfig('bench', parallel=parallel)
    )
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
        idle = _idle_cpu(tmp, 5.0 if quick else 10.0)
    sample_bytes = sum(len(b) for b in frames[0].values())
    drain_1000_s = drain['seconds'] * 1000 / backlog
    return {
        'sample': '240x424 sim frame: rgb.png + 16-bit depth.png (PNG level 1) + meta.json',
        'sample_bytes_approx': sample_bytes,
        'throughput': runs,
        'backlog_drain': dict(drain, backlog=backlog),
        'drain_1000_samples_s': round(drain_1000_s, 1),
        'target_drain_1000_samples_s': TARGET_DRAIN_1000_S,
        'idle': idle,
        'target_idle_cpu_percent': TARGET_IDLE_CPU_PERCENT,
        'target_met': bool(
            idle['node_alive']
            and idle['cpu_percent_of_one_core'] < TARGET_IDLE_CPU_PERCENT
            and drain['complete']
            and drain_1000_s < TARGET_DRAIN_1000_S
        ),
    }
