"""Facilitators' notifications by mail: events noted as they happen, sent as one digest each."""
