"""Campus world simulator: procedural campus scenes rendered to RGB, depth and labels.

ROS-free. ``world.CampusWorld`` renders frames, ``route.Route`` drives a camera through the campus,
``tasks`` defines the known and unseen tasks; ``robo_lifelong.io.dataset`` writes its Sedna
datasets and ``bag`` records a drive as rosbag2.

Imports the base modules, ``io``, ``models``, ``transfer`` and ``perception``.
"""
