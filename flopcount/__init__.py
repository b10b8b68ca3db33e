"""flopcount package."""
