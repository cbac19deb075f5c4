"""Why a figure is empty, in the same words on pages, in CSV and in JSON: each empty figure carries
its reason, so it can say why instead of showing a zero."""

from __future__ import annotations

from safespace.i18n import gettext as _

# Why a figure is empty: the same words in pages, CSV and JSON.
BELOW_K = "fewer_than_k"  # primary suppression: fewer than k people behind it
COMPLEMENTARY = "protects_a_smaller_group"  # hidden so that a smaller group cannot be worked out
HIDDEN = "hidden_at_close"  # a team's tally was dropped at close: too few answered, or it would reveal a smaller group


def reason_text(reason: str | None, k: int) -> str:
    return {
        BELOW_K: _("fewer than %(k)s people") % {"k": k},
        COMPLEMENTARY: _("hidden to protect a smaller group"),
        HIDDEN: _("too few answered, or it would reveal a smaller group"),
        None: "",
    }[reason]
