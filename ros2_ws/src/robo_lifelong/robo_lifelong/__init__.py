"""robo_lifelong: lifelong learning for a campus delivery robot dog (the robot side).

Sub-packages in layers, lowest first: the base modules here (``errors``, ``labels``,
``supervision``, ``parameters``, ``share``), then ``io``, ``models``, ``transfer``,
``perception``, ``sim``, ``offline`` and ``nodes``; a module imports only from its own layer or
lower ones. Everything except ``robo_lifelong.nodes`` is ROS-free, and nothing here needs torch
or the cloud worker (tests/test_import_graph.py checks all three; docs/design.md has the map).
"""
