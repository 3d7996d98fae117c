"""Training throughput of the segmentation net at 240x424 on 2 threads (images/s, batch 8).

Forward, cross-entropy on upsampled logits, backward and AdamW step, as ``train_loop.train`` does
them, on random RGB-D batches (throughput does not depend on the data). Target: >= 5 images/s, so
an epoch over 1000 frames takes under 3.5 minutes on a 2-core cloud worker.
"""

from __future__ import annotations

import os
import time

import torch

from robo_lifelong.labels import NUM_CLASSES
from robo_lifelong_cloud.model import SegNetConfig, build_model
from robo_lifelong_cloud.train_loop import segmentation_loss

HEIGHT, WIDTH, BATCH, THREADS = 240, 424, 8, 2
TARGET_IMAGES_PER_S = 5.0


def run(quick: bool = False) -> dict:
    iterations = 3 if quick else 15
    torch.set_num_threads(THREADS)
    model = build_model(SegNetConfig(num_classes=NUM_CLASSES, in_channels=4), seed=0).train()
    model.to(memory_format=torch.channels_last)  # as train_loop.train does
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(BATCH, 4, HEIGHT, WIDTH).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (BATCH, HEIGHT, WIDTH))

    def step() -> None:
        logits, _ = model(x)
        loss = segmentation_loss(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocator and kernel selection
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    seconds = time.perf_counter() - start
    images_per_s = iterations * BATCH / seconds
    return {
        'load_average_1min': round(os.getloadavg()[0], 2),  # other jobs on the cores slow it
        'input': f'{HEIGHT}x{WIDTH} RGB-D, {NUM_CLASSES} classes, batch {BATCH}',
        'threads': THREADS,
        'iterations': iterations,
        'images_per_s': round(images_per_s, 2),
        'seconds_per_iteration': round(seconds / iterations, 3),
        'target_images_per_s': TARGET_IMAGES_PER_S,
        'target_met': images_per_s >= TARGET_IMAGES_PER_S,
    }
