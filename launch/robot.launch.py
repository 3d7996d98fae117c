"""Robot bringup: perception and bridge in one namespace, with the package's Fast DDS profile.

    ros2 launch robo_lifelong robot.launch.py robot_id:=dog-7 storage_url:=s3://bucket/robots

Camera topics default to the realsense2_camera wrapper's names; remap them with rgb_topic and
depth_topic. Start the camera driver with the same Fast DDS profile variable (see README).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from robo_lifelong.io.dds import profile_env_names

PACKAGE = 'robo_lifelong'


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
            'model_path', default_value='', description='model package to start with (optional)'
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
        # An already exported profile wins, so users can point all nodes at their own.
        DeclareLaunchArgument(
            'fastdds_profile',
            default_value=EnvironmentVariable(
                'FASTDDS_DEFAULT_PROFILES_FILE',
                default_value=EnvironmentVariable(
                    'FASTRTPS_DEFAULT_PROFILES_FILE', default_value=default_profile
                ),
            ),
            description='Fast DDS XML profile (shared memory for large images)',
        ),
    ]
    arg = {a.name: LaunchConfiguration(a.name) for a in declared}
    # Both nodes share the spool; the bridge installs models in models_dir and names the current
    # one in its current.json, which perception follows (model_path only until there is one).
    common = {
        'robot_id': arg['robot_id'],
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
    return LaunchDescription([*declared, *profile, perception, bridge])
