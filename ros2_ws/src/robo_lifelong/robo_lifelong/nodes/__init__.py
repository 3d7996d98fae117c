"""The ROS 2 nodes: thin rclpy adapters that move messages to and from the ROS-free core, and the
QoS profiles, ``main()`` shape, rviz markers, numpy -> Image messages and parameter declaration
they share.

The only place that imports rclpy and ROS messages; may import every other sub-package, and
nothing imports it (console scripts and launch files start the nodes).
"""
