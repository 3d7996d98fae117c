"""Cloud side of robo-lifelong: the Sedna LifelongLearningJob train/eval worker."""
