"""experiments.training."""
