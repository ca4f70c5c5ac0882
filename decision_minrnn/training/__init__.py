"""Training: the config system, checkpoints and the trainer (data batches in, an agent's weights out)."""
