"""A single-machine Sedna controller (GM + LC) for one LifelongLearningJob; see runner.py."""
