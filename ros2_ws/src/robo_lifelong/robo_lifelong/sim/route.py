"""A continuous drive along the campus street, switching task on a schedule."""

from __future__ import annotations

import math

from robo_lifelong.errors import ConfigError
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.layout import STREET
from robo_lifelong.sim.tasks import TASKS
from robo_lifelong.sim.world import CampusWorld, Frame, Pose

SPEED = 1.2  # m/s, a brisk robot-dog walk
Schedule = tuple[tuple[str, float], ...]


def parse_schedule(text: str) -> Schedule:
    """'sunny:20,night:10,sunny:20' -> (('sunny', 20.0), ('night', 10.0), ('sunny', 20.0))."""
    segments = []
    for part in filter(None, (p.strip() for p in text.split(','))):
        name, sep, seconds = part.partition(':')
        if not sep:
            raise ConfigError(f'schedule segment {part!r} is not task:seconds')
        if name not in TASKS:
            raise ConfigError(f'schedule names unknown task {name!r}; tasks: {", ".join(TASKS)}')
        try:
            duration = float(seconds)
        except ValueError:
            raise ConfigError(f'schedule segment {part!r}: {seconds!r} is not a number') from None
        if not duration > 0:
            raise ConfigError(f'schedule segment {part!r}: duration must be > 0')
        segments.append((name, duration))
    if not segments:
        raise ConfigError(f'empty schedule {text!r}')
    return tuple(segments)


def schedule_seconds(schedule: Schedule) -> float:
    """Route time of one pass of ``schedule``: after it the schedule repeats."""
    return sum(seconds for _, seconds in schedule)


class Route:
    """The robot walks along the sidewalk, weaving towards the curb and back, and looks around.
    The schedule repeats forever; route time t (seconds) fully determines the frame."""

    def __init__(self, schedule: Schedule, seed: int = 0, camera: CameraModel | None = None):
        self.schedule = schedule
        self.period = schedule_seconds(schedule)
        self.world = CampusWorld(seed, camera)

    def task_at(self, t: float) -> str:
        t = t % self.period
        for name, seconds in self.schedule:
            if t < seconds:
                return name
            t -= seconds
        return self.schedule[-1][0]

    def pose_at(self, t: float) -> Pose:
        weave = 2 * math.pi / 40.0  # one sidewalk-to-curb-and-back every 40 s
        y = STREET.road_half + 1.0 + 1.2 * math.sin(weave * t)
        heading = math.atan2(1.2 * weave * math.cos(weave * t), SPEED)
        look = 0.3 * math.sin(2 * math.pi * t / 17.0)
        return Pose(SPEED * t, y, heading + look)

    def frame_at(self, t: float) -> Frame:
        return self.world.render(self.pose_at(t), self.task_at(t), noise_seed=int(t * 1000))
