"""Training and evaluation: the training loop with checkpoints and resume, and evaluation."""
