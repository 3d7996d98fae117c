"""rviz messages of the perception node: alarm/terrain text markers and diagnostic statuses."""

from __future__ import annotations

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from robo_lifelong.perception.alarm_policy import AlarmLevel, AlarmStatus
from robo_lifelong.perception.terrain import GaitAdvice, TerrainResult

# RGBA per alarm level: green, amber, red, grey
LEVEL_COLORS: dict[AlarmLevel, tuple[float, float, float, float]] = {
    AlarmLevel.OK: (0.2, 0.9, 0.2, 1.0),
    AlarmLevel.WARN: (1.0, 0.7, 0.0, 1.0),
    AlarmLevel.ERROR: (1.0, 0.1, 0.1, 1.0),
    AlarmLevel.STALE: (0.6, 0.6, 0.6, 1.0),
}
MARKER_LIFETIME = Duration(sec=2)  # markers vanish in rviz when the node stops publishing


def _text(header: Header, ns: str, z: float, text: str, rgba, size: float) -> Marker:
    m = Marker(header=header, ns=ns, id=0, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
    # in the optical frame: x right, y down, z forward; text floats ahead, above the view centre
    m.pose.position.x, m.pose.position.y, m.pose.position.z = 0.0, -0.6, z
    m.pose.orientation.w = 1.0
    m.scale.z = size
    m.color = ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])
    m.text = text
    m.lifetime = MARKER_LIFETIME
    return m


def alarm_text(status: AlarmStatus) -> str:
    score = '-' if status.score is None else f'{status.score:.2f}'
    threshold = '-' if status.threshold is None else f'{status.threshold:.2f}'
    return (
        f'{status.level.name}  score {score}/{threshold}  task {status.task or "-"}  '
        f'model {status.model_version or "none"}'
    )


def marker_array(
    header: Header, status: AlarmStatus, terrain: TerrainResult | None, gait: GaitAdvice | None
) -> MarkerArray:
    """An alarm line (coloured by level) and, when known, a terrain/gait line below it."""
    markers = [_text(header, 'alarm', 3.0, alarm_text(status), LEVEL_COLORS[status.level], 0.2)]
    if terrain is not None and gait is not None:
        text = (
            f'ground {terrain.current.value} -> {terrain.future.value}  ramp {terrain.ramp.value}'
            f'  gait {gait.gait.value} ({gait.motion.value})'
        )
        markers.append(_text(header, 'terrain', 3.0, text, (1.0, 1.0, 1.0, 1.0), 0.15))
        markers[-1].pose.position.y = -0.35
    return MarkerArray(markers=markers)


def diagnostic_status(
    name: str, level: int, message: str, hardware_id: str, values: list[tuple[str, str]]
) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=bytes([int(level)]),
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=v) for k, v in values],
    )
