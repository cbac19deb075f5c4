"""The errors every area raises and the web layer turns into answers (web/errors.py): input a person
can fix (422, with the message beside its field) and actions the rules forbid (409)."""

from __future__ import annotations


class InvalidInput(Exception):
    """Input a person can fix: field name -> message (already translated)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class Refused(Exception):
    """An action the rules forbid (e.g. removing the last facilitator); the message says why."""
