"""Tasks: the domains a campus robot meets. Known tasks train the first model; unseen ones test it.

A task fixes the campus layout style, the lighting and weather, and what stands on the street.
Every frame carries its task name; the name is the dataset's and the model manifest's task key.
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Task:
    name: str
    known: bool
    description: str
    # layout
    ramp_rate: float = 0.25  # chance that a 20 m street cell has a curb ramp pair and crosswalk
    stairs_rate: float = 0.1  # chance that a cell has a flight of stairs on the sidewalk
    crowd: float = 1.0  # multiplier on people and bicycles
    construction: bool = False  # barriers and traffic cones on road and sidewalk (classes 22, 23)
    brick_sidewalk: bool = False
    # light and weather
    sun_elevation_deg: float = 45.0
    sun_azimuth_deg: float = 60.0  # from +x (street direction) towards +y
    sun: float = 1.0  # direct light strength
    ambient: float = 0.45
    sky_top: RGB = (0.35, 0.55, 0.9)
    sky_horizon: RGB = (0.75, 0.85, 0.95)
    dappled_shade: float = 0.0  # fraction of ground in tree shade
    snow: float = 0.0  # ground and top-surface snow cover, 0..1
    fog: float = 0.0  # extinction per metre
    fog_color: RGB = (0.8, 0.8, 0.8)
    night: bool = False  # street lamps, lit windows, the robot's own lamp
    exposure: float = 1.0
    noise: float = 0.015  # sensor noise sigma (0..1 scale), more at night
    tint: RGB = (1.0, 1.0, 1.0)  # white balance of the light


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            'sunny',
            True,
            'Sunny campus: hard sun, cast shadows, blue sky.',
            sun_elevation_deg=40.0,
            sun=1.0,
            ambient=0.42,
            tint=(1.05, 1.0, 0.92),
        ),
        Task(
            'overcast',
            True,
            'Shaded and overcast paths: diffuse light, grey sky, dappled tree shade.',
            sun=0.15,
            ambient=0.75,
            sky_top=(0.62, 0.65, 0.7),
            sky_horizon=(0.8, 0.81, 0.83),
            dappled_shade=0.35,
            exposure=0.95,
            tint=(0.95, 0.98, 1.03),
        ),
        Task(
            'curbs',
            True,
            'Sidewalks with curbs, ramps and stairs: brick paving, many crossings.',
            ramp_rate=0.8,
            stairs_rate=0.45,
            brick_sidewalk=True,
            sun_elevation_deg=55.0,
            sun_azimuth_deg=-50.0,
            sun=0.8,
            ambient=0.5,
        ),
        Task(
            'night',
            False,
            'Night: street lamps, lit windows, the robot lamp, strong sensor noise.',
            sun=0.0,
            ambient=0.06,
            sky_top=(0.01, 0.015, 0.04),
            sky_horizon=(0.05, 0.05, 0.09),
            night=True,
            noise=0.05,
            exposure=1.1,
            tint=(1.1, 0.95, 0.75),
        ),
        Task(
            'snow',
            False,
            'Snow and fog: white ground cover, snow on top surfaces, low visibility.',
            sun=0.2,
            ambient=0.8,
            sky_top=(0.78, 0.8, 0.83),
            sky_horizon=(0.88, 0.89, 0.9),
            snow=0.85,
            fog=0.07,
            fog_color=(0.86, 0.87, 0.89),
            tint=(0.95, 0.98, 1.05),
        ),
        Task(
            'construction',
            False,
            'Construction zone: barriers and traffic cones (never seen before) block the way.',
            construction=True,
            sun_elevation_deg=35.0,
            sun_azimuth_deg=120.0,
            crowd=0.4,
        ),
        Task(
            'dusk',
            False,
            'Dusk: a low orange sun behind the street, long shadows, dim light and haze.',
            sun_elevation_deg=7.0,
            sun_azimuth_deg=170.0,
            sun=0.55,
            # bright enough that the camera check sees a scene: dimmer and hazier, whole
            # stretches of the view went flat and it held them as a covered lens
            ambient=0.35,
            sky_top=(0.22, 0.2, 0.38),
            sky_horizon=(0.95, 0.55, 0.32),
            fog=0.012,
            fog_color=(0.62, 0.46, 0.4),
            noise=0.03,
            exposure=1.4,
            tint=(1.25, 0.85, 0.6),
        ),
    )
}
KNOWN_TASKS: tuple[str, ...] = tuple(n for n, t in TASKS.items() if t.known)
UNSEEN_TASKS: tuple[str, ...] = tuple(n for n, t in TASKS.items() if not t.known)


def get_task(name: str) -> Task:
    """The task called ``name``; KeyError naming the valid tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f'unknown task {name!r}; tasks: {", ".join(TASKS)}') from None
