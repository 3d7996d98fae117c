"""S3 upload throughput of 240x424 RGB-D samples to a loopback SeaweedFS, 1 and 4 parallel uploads.

One sample = an rgb8 object (305 KB) + a 16-bit depth object (203 KB), written with
``Storage.write_bytes`` as the bridge does. Target: the bridge could upload every frame of a 30 FPS
camera (>= 30 samples/s with the better of the two settings). The server shares the machine's
2 cores with the client here; a remote endpoint is bounded by the network instead.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from robo_lifelong.transfer.storage import S3Config, Storage, open_storage
from tests.fakes.seaweedfs import SeaweedS3

HEIGHT, WIDTH = 240, 424
TARGET_SAMPLES_PER_S = 30.0
PARALLEL = (1, 4)


def _sample(rng: np.random.Generator) -> tuple[bytes, bytes]:
    # random bytes: incompressible, like real sensor noise, so no store can shortcut them
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8).tobytes()
    depth = rng.integers(0, 10_000, (HEIGHT, WIDTH), dtype=np.uint16).tobytes()
    return rgb, depth


def _upload(store: Storage, index: int, sample: tuple[bytes, bytes]) -> float:
    started = time.perf_counter()
    store.write_bytes(f'samples/{index:06d}/rgb.raw', sample[0])
    store.write_bytes(f'samples/{index:06d}/depth.raw', sample[1])
    return time.perf_counter() - started


def _measure(server: SeaweedS3, bucket: str, parallel: int, samples: list) -> dict:
    s3 = S3Config.from_environ(server.env)
    stores = [open_storage(f'{bucket}/p{parallel}', s3) for _ in range(parallel)]
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        latencies = list(
            pool.map(
                lambda i: _upload(stores[i % parallel], i, samples[i]),
                range(len(samples)),
            )
        )
    elapsed = time.perf_counter() - started
    megabytes = sum(len(rgb) + len(depth) for rgb, depth in samples) / 1e6
    return {
        'parallel': parallel,
        'samples': len(samples),
        'mb_per_s': round(megabytes / elapsed, 2),
        'samples_per_s': round(len(samples) / elapsed, 2),
        'sample_latency_ms_p50': round(float(np.percentile(latencies, 50)) * 1e3, 1),
        'sample_latency_ms_p95': round(float(np.percentile(latencies, 95)) * 1e3, 1),
    }


def run(quick: bool = False) -> dict:
    rng = np.random.default_rng(0)
    samples = [_sample(rng) for _ in range(20 if quick else 120)]
    with (
        tempfile.TemporaryDirectory(prefix='bench-storage-') as tmp,
        SeaweedS3(Path(tmp)) as server,
    ):
        bucket = server.make_bucket('bench-storage')
        _measure(server, bucket, 1, samples[:3])  # warm-up: volume allocation, connections
        runs = [_measure(server, bucket, parallel, samples) for parallel in PARALLEL]
    best = max(r['samples_per_s'] for r in runs)
    return {
        'object': f'{HEIGHT}x{WIDTH} rgb8 + 16UC1 depth, raw bytes',
        'sample_bytes': len(samples[0][0]) + len(samples[0][1]),
        'runs': runs,
        'target_samples_per_s': TARGET_SAMPLES_PER_S,
        'target_met': best >= TARGET_SAMPLES_PER_S,
    }
