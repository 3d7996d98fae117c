"""Boundaries to the outside world's formats: ROS image messages <-> arrays, colour/depth
pairing, rosbag2 files, the Fast DDS profile and the Sedna dataset index format.

Imports only the base modules (``errors``, ``labels``).
"""
