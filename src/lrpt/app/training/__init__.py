"""Training and evaluation: the loop, its checkpoints and results, evaluation, ranks."""
