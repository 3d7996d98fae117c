"""Campus world simulator: procedural campus scenes rendered to RGB, depth and labels.

ROS-free. ``world.CampusWorld`` renders frames, ``route.Route`` drives a camera through the campus,
``tasks`` defines the known and unseen tasks, ``dataset`` (one level up) writes Sedna datasets.
"""
