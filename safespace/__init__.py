"""Safespace: anonymous trust pulse surveys and failure sharing for communities of practice."""
