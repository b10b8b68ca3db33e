"""experiments.models.loading."""
