"""pulse area."""
