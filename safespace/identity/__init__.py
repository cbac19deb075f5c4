"""identity area."""
