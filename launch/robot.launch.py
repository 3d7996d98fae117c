"""Robot bringup: perception and bridge in one namespace, with the package's Fast DDS profile.

    ros2 launch robo_lifelong robot.launch.py robot_id:=dog-7 storage_url:=s3://bucket/robots

Perception starts on the base model shipped in share/robo_lifelong/models/base (``make
base-model``; ``model_path:=DIR`` starts it on another package) and follows the bridge's
models/current.json once the lifelong job has deployed a model.

Camera topics default to the realsense2_camera wrapper's names; remap them with rgb_topic and
depth_topic. Start the camera driver with the same Fast DDS profile variable (see README).

A node that exits takes the whole launch down (launch logs which process died, with its exit
code): a node that cannot start (exit code 2: a bad parameter) would only fail again if
respawned, and a bridge or perception that is gone must not leave the others running as if
nothing happened. Restart the launch from the robot's process supervisor (systemd
``Restart=always`` with ``RestartSec``, or a pod's restart policy, which backs off; ``ros2
launch`` itself exits with 0); everything a restart needs is on disk (spool,
models/current.json).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    RegisterEventHandler,
    SetEnvironmentVariable,
    Shutdown,
)
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from robo_lifelong.io.dds import LEGACY_PROFILES_ENV, PROFILES_ENV, profile_env_names
from robo_lifelong.share import BASE_MODEL, PACKAGE


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    config = os.path.join(share, 'config')
    default_profile = os.path.join(config, 'fastdds_shm.xml')
    declared = [
        DeclareLaunchArgument('namespace', default_value=PACKAGE, description='node namespace'),
        DeclareLaunchArgument(
            'perception_params',
            default_value=os.path.join(config, 'perception.yaml'),
            description='parameter file of the perception node',
        ),
        DeclareLaunchArgument(
            'bridge_params',
            default_value=os.path.join(config, 'bridge.yaml'),
            description='parameter file of the bridge node',
        ),
        DeclareLaunchArgument(
            'data_dir',
            default_value=os.path.join(os.path.expanduser('~'), '.robo_lifelong'),
            description='robot-local state: <data_dir>/spool (samples) and <data_dir>/models',
        ),
        DeclareLaunchArgument(
            'model_path',
            default_value=os.path.join(share, BASE_MODEL),
            description='model package to start with until the bridge installs one (default: '
            "the shipped base model, see its MODEL_CARD.md; '' for none)",
        ),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false', description='use /clock (bag replay, sim)'
        ),
        DeclareLaunchArgument(
            'robot_id',
            default_value='robot-dog-1',
            description='id of this robot in sample ids and the storage layout',
        ),
        DeclareLaunchArgument(
            'storage_url',
            default_value=os.path.join(os.path.expanduser('~'), '.robo_lifelong', 'storage'),
            description='s3://bucket/prefix or a local directory shared with the cloud',
        ),
        DeclareLaunchArgument(
            'rgb_topic', default_value='/camera/camera/color/image_raw', description='RGB topic'
        ),
        DeclareLaunchArgument(
            'depth_topic',
            default_value='/camera/camera/aligned_depth_to_color/image_raw',
            description='depth aligned to the RGB image',
        ),
        # An already exported profile wins, so users can point all nodes at their own. Read
        # here (the launch's environment) rather than as a substitution, so that --show-args
        # prints the path a user gets.
        DeclareLaunchArgument(
            'fastdds_profile',
            default_value=(
                os.environ.get(PROFILES_ENV)
                or os.environ.get(LEGACY_PROFILES_ENV)
                or default_profile
            ),
            description=f'Fast DDS XML profile (shared memory for large images); default: '
            f"${PROFILES_ENV}, else ${LEGACY_PROFILES_ENV}, else the package's",
        ),
    ]
    arg = {a.name: LaunchConfiguration(a.name) for a in declared}
    # Both nodes share the spool; the bridge installs models in models_dir and names the current
    # one in its current.json, which perception follows (model_path only until there is one).
    # launch_ros reads an untyped value as YAML (so storage_url:="''" is empty): an id of digits
    # (robot_id:=7) would become an int, which the node refuses
    common = {
        'robot_id': ParameterValue(arg['robot_id'], value_type=str),
        'use_sim_time': ParameterValue(arg['use_sim_time'], value_type=bool),
        'spool_dir': PathJoinSubstitution([arg['data_dir'], 'spool']),
    }
    models_dir = PathJoinSubstitution([arg['data_dir'], 'models'])
    perception = Node(
        package=PACKAGE,
        executable='perception',
        name='perception',
        namespace=arg['namespace'],
        parameters=[
            arg['perception_params'],
            common,
            {'model_path': arg['model_path'], 'model_watch_dir': models_dir},
        ],
        remappings=[
            ('camera/color/image_raw', arg['rgb_topic']),
            ('camera/aligned_depth_to_color/image_raw', arg['depth_topic']),
        ],
        output='screen',
    )
    bridge = Node(
        package=PACKAGE,
        executable='bridge',
        name='bridge',
        namespace=arg['namespace'],
        parameters=[
            arg['bridge_params'],
            common,
            {'storage_url': arg['storage_url'], 'models_dir': models_dir},
        ],
        output='screen',
    )
    # Fast DDS 2 (Humble, Jazzy) reads FASTRTPS_DEFAULT_PROFILES_FILE, Fast DDS 3 the FASTDDS_ one
    profile = [SetEnvironmentVariable(n, arg['fastdds_profile']) for n in profile_env_names()]
    # one handler for every process of the launch, the demo's sim camera included
    end_on_exit = RegisterEventHandler(OnProcessExit(on_exit=_shutdown))
    return LaunchDescription([*declared, *profile, end_on_exit, perception, bridge])


def _shutdown(event: object, _context: object) -> list:
    reason = f'{event.process_name} exited with code {event.returncode}; stopping the launch'
    return [Shutdown(reason=reason)]
