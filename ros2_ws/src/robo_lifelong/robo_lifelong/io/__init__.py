"""Boundaries to the outside world's formats, all without ROS: image messages -> arrays,
colour/depth pairing, rosbag2 files (through ``rosbags``), the Fast DDS profile and the Sedna
dataset index format.

Imports only the base modules (``errors``, ``labels``, ...).
"""
