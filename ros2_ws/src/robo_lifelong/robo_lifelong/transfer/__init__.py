"""Robot <-> storage: object stores (local directories, S3), the durable sample spool, the
uploader, model packages and pointers in storage, and model download on the robot.

Imports the base modules, ``io`` and ``models``.
"""
