"""What runs a task: CLI, config, run dirs, loggers, callbacks, checkpoints, results, prediction."""
