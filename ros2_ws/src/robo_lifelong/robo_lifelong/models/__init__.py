"""Model packages (manifest format, hashes, deploy pointer), the onnxruntime runtime, unseen-task
scoring on the robot and the hot-swappable model slot.

Imports the base modules and ``io``.
"""
