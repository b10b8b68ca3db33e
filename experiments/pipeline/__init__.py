"""experiments.pipeline."""
