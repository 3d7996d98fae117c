"""robo_lifelong: lifelong learning for a campus delivery robot dog.

Everything in this package except ``robo_lifelong.nodes`` is ROS-free.
"""
