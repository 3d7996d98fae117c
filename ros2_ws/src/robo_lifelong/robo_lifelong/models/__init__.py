"""Model packages (manifest format, hashes, deploy pointer), the onnxruntime runtime, unseen-task
scoring on the robot (the calibration is fitted in the cloud), the hot-swappable model slot and
the record of the current model.

Imports the base modules and ``io``.
"""
