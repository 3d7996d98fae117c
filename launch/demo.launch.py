"""Robot bringup driven by the simulated campus camera instead of a real one.

ros2 launch robo_lifelong demo.launch.py schedule:=sunny:20,night:15,sunny:20

Every argument of robot.launch.py is one of this launch too (its ``--show-args`` lists them); the
camera topics default to the sim camera's names, inside the namespace, and rename both the
camera's output and perception's input. As in robot.launch.py, a node that exits ends the launch.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from robo_lifelong.share import PACKAGE

# what the sim camera node publishes (nodes/sim_camera_node.py), relative to its namespace
CAMERA_RGB = 'camera/color/image_raw'
CAMERA_DEPTH = 'camera/aligned_depth_to_color/image_raw'


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    arguments = {
        'namespace': (PACKAGE, 'namespace of every node and topic'),
        'schedule': ('sunny:20,night:15,sunny:20', 'task:seconds route schedule'),
        # The sim camera's own defaults (SimCameraConfig), written here because the launch
        # process need not have the simulator's dependencies (OpenCV): importing the node module
        # would fail there. tests/ros/test_node_parameters.py checks they are equal.
        'rate_hz': ('15.0', 'camera frame rate'),
        'width': ('424', 'image width'),
        'height': ('240', 'image height'),
        'ground_truth_dir': (
            os.path.join(os.path.expanduser('~'), '.robo_lifelong', 'ground_truth'),
            'where the simulator keeps ground-truth labels for annotation',
        ),
        # relative: the sim camera publishes inside the namespace
        'rgb_topic': (CAMERA_RGB, 'RGB topic the sim camera publishes and perception reads'),
        'depth_topic': (CAMERA_DEPTH, 'depth topic the sim camera publishes and perception reads'),
    }
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=text)
        for name, (default, text) in arguments.items()
    ]
    arg = {name: LaunchConfiguration(name) for name in arguments}
    camera = Node(
        package=PACKAGE,
        executable='sim_camera',
        name='sim_camera',
        namespace=arg['namespace'],
        parameters=[
            {
                'schedule': arg['schedule'],
                'rate_hz': ParameterValue(arg['rate_hz'], value_type=float),
                'width': ParameterValue(arg['width'], value_type=int),
                'height': ParameterValue(arg['height'], value_type=int),
                'ground_truth_dir': arg['ground_truth_dir'],
            }
        ],
        remappings=[(CAMERA_RGB, arg['rgb_topic']), (CAMERA_DEPTH, arg['depth_topic'])],
        output='screen',
    )
    robot = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'robot.launch.py')),
        launch_arguments={
            name: arg[name] for name in ('namespace', 'rgb_topic', 'depth_topic')
        }.items(),
    )
    return LaunchDescription([*declared, robot, camera])
