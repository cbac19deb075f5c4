"""Text as we store it, whatever area it comes from."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(value: str, *, multiline: bool = False) -> str:
    """No control characters (PostgreSQL refuses NUL), normal line ends; one line unless multiline."""
    value = _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    return value.strip() if multiline else " ".join(value.split())
