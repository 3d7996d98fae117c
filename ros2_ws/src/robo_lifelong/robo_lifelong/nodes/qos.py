"""QoS profiles shared by the nodes, so publishers and subscribers agree on them."""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Camera streams: best effort, shallow history; a late frame is worth less than the next one.
SENSOR_QOS: QoSProfile = qos_profile_sensor_data

# Slowly changing state (current task, model version): late joiners get the last value.
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

# Events that must not be lost (sample announcements, model/update requests), volatile so that
# any publisher matches: a transient-local reader ignores volatile writers.
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
