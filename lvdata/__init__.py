"""lvdata package."""
