"""Details that could identify the writer of a story, found before it is stored (P5).

The server knows the roster, so it can warn about names of community members; the patterns
catch email addresses, phone numbers, web addresses and exact dates. A warning, not a filter:
the writer decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
PHONE = re.compile(r"(?<!\w)\+?\d[\d\s().-]{6,}\d(?!\w)")
DATE = re.compile(
    r"\b(?:\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}-\d{2}-\d{2}|"
    r"\d{1,2}\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|ene|abr|ago|dic)[a-z]*\.?(?:\s+\d{4})?)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Finding:
    kind: str  # "name" | "email" | "phone" | "url" | "date"
    text: str


def find_identifying(text: str, names: list[str]) -> list[Finding]:
    """Every identifying detail in text, in order of kind; names match whole words, any case."""
    found: list[Finding] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: str, value: str) -> None:
        key = (kind, value.lower())
        if key not in seen:
            seen.add(key)
            found.append(Finding(kind, value))

    for name in sorted({n.strip() for n in names if len(n.strip()) >= 2}, key=len, reverse=True):
        for match in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", text, flags=re.IGNORECASE):
            add("name", match.group(0))
    for match in EMAIL.finditer(text):
        add("email", match.group(0))
    for match in URL.finditer(text):
        add("url", match.group(0))
    for match in PHONE.finditer(text):
        if not DATE.fullmatch(match.group(0).strip()):
            add("phone", match.group(0).strip())
    for match in DATE.finditer(text):
        add("date", match.group(0))
    return found


def roster_names(display_names: list[str], emails: list[str]) -> list[str]:
    """Full names, first names and display names of members (and the local parts of their emails)."""
    names: set[str] = set()
    for display in display_names:
        display = " ".join(display.split())
        if display:
            names.add(display)
            names.add(display.split(" ")[0])
    for email in emails:
        local = email.split("@")[0]
        if len(local) >= 3 and local.isalpha():
            names.add(local)
    return sorted(names)
