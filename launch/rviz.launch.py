"""rviz2 with the package's view: camera image, segmentation overlay, markers and alarm state.

ros2 launch robo_lifelong rviz.launch.py
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    config = os.path.join(
        get_package_share_directory('robo_lifelong'), 'rviz', 'robo_lifelong.rviz'
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument('rviz_config', default_value=config, description='rviz config'),
            Node(
                package='rviz2',
                executable='rviz2',
                name='rviz2',
                arguments=['-d', LaunchConfiguration('rviz_config')],
                output='screen',
            ),
        ]
    )
