"""experiments.forecasting."""
