"""ament_python package robo_lifelong: ROS-free core modules plus thin rclpy nodes."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'robo_lifelong'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'tests']),
    package_data={PACKAGE: ['schemas/*.json']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        # `launch` is a symlink to the repository's top-level launch/ directory.
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml') + glob('config/*.xml')),
        (f'share/{PACKAGE}/rviz', glob('rviz/*.rviz')),
        # the base model package (make base-model) and its card
        (f'share/{PACKAGE}/models', glob('models/*.md')),
        (f'share/{PACKAGE}/models/base', glob('models/base/*')),
    ],
    install_requires=['setuptools', 'numpy', 'opencv-python-headless', 'PyYAML'],
    zip_safe=True,
    maintainer='robo-lifelong maintainers',
    maintainer_email='robo-lifelong@example.org',
    description='Lifelong learning for a campus delivery robot dog (ROS 2).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'robo-lifelong-sim = robo_lifelong.sim.cli:main',
            'sim_camera = robo_lifelong.nodes.sim_camera_node:main',
            'bridge = robo_lifelong.nodes.bridge_node:main',
            'robo-lifelong-annotate = robo_lifelong.offline.annotation:main',
            'perception = robo_lifelong.nodes.perception_node:main',
            'observer = robo_lifelong.nodes.observer_node:main',
            'robo-lifelong = robo_lifelong.offline.cli:main',
        ],
    },
)
