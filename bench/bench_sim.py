"""Campus simulator speed: frames/s per task and size on one core (target >= 50 at 240x424).

The renderer alone; the sim camera node's rate as another process receives it (timer, rendering,
conversion, DDS) is bench_sim_camera."""

from __future__ import annotations

import time

from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.tasks import TASKS
from robo_lifelong.sim.world import CampusWorld

TARGET_FPS_240x424 = 50.0


def _fps(world: CampusWorld, task: str, frames: int) -> float:
    world.random_frame(task, 0)  # warm caches (textures, cells)
    start = time.process_time()  # CPU time of this single-threaded renderer: one core's worth
    for i in range(1, frames + 1):
        world.random_frame(task, i)
    return frames / (time.process_time() - start)


def run(quick: bool = False) -> dict:
    frames = 10 if quick else 60
    sizes = [(240, 424)] if quick else [(240, 424), (480, 640), (720, 1280)]
    result: dict = {'unit': 'frames/s on one core (process CPU time)', 'sizes': {}}
    for h, w in sizes:
        world = CampusWorld(seed=0, camera=CameraModel(w, h))
        per_task = {task: round(_fps(world, task, frames), 1) for task in TASKS}
        mean = sum(per_task.values()) / len(per_task)
        result['sizes'][f'{h}x{w}'] = {'per_task': per_task, 'mean': round(mean, 1)}
    mean = result['sizes']['240x424']['mean']
    result['target_240x424'] = TARGET_FPS_240x424
    result['target_met'] = mean >= TARGET_FPS_240x424
    return result
