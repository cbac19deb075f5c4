"""privacy area."""
