"""Training: a run's setup, the loop (train, validate, test), optimizers and schedules, the device and its
precision, checkpoints, metrics, and opening a finished run again."""
