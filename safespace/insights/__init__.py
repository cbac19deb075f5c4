"""insights area."""
