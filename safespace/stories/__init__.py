"""stories area."""
