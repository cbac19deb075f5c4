"""Survey instruments: the items, the answer scale and the reverse keying, loaded from data files.

The built-in instruments live as TOML in surveys/instruments/; facilitators' custom instruments
are stored as plain dicts and go through the same parser, so one set of rules guards both.
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from surveys.tally import AGREEMENT, CHOICE, CHOICE_OPTIONS, ZERO_TO_TEN

INSTRUMENTS_DIR = Path(__file__).with_name("instruments")
SLUG = re.compile(r"[a-z][a-z0-9_]{0,39}")
SCALE_POINTS = (5, 7)
MAX_ITEMS = 30
# The kinds of answer scale, defined once with the tallies that count them: agreement (Likert, 5 or
# 7 points, the default, so definitions written before kinds existed still read), zero_to_ten (11
# points 0..10, labels for the two ends: the eNPS question) and choice (2 to 10 named options with
# no order: no mean, favourable or score).
SCALE_KINDS = (AGREEMENT, ZERO_TO_TEN, CHOICE)
DIMENSIONS = (
    "shared_vision",
    "flexible_leadership",
    "risk_free_environment",
    "technology_enabler",
    "measurement_for_improvement",
)


def _base_language(language: str) -> str:
    return language.replace("_", "-").split("-")[0].lower()


class Text(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    en: str
    es: str

    def get(self, language: str) -> str:
        return self.es if _base_language(language) == "es" else self.en


class Item(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: str
    text: Text
    reverse: bool = False
    dimension: str = ""


class Scale(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The answers a block of questions shares. `points` counts the answers a question can take
    (5 or 7; 11 for 0..10; the number of options); `labels` names every point, or for zero_to_ten
    the two ends. omit_defaults: an agreement scale is stored exactly as before kinds existed."""

    points: int
    labels: list[Text]
    kind: str = AGREEMENT

    @property
    def lowest(self) -> int:
        """The value of the first point: 0 on a 0..10 scale, else 1."""
        return 0 if self.kind == ZERO_TO_TEN else 1

    @property
    def ordered(self) -> bool:
        """Whether answers have an order that a mean or a score could read (not for choice)."""
        return self.kind != CHOICE


class Instrument(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: str
    version: int
    name: Text
    description: Text
    scale: Scale
    items: list[Item]
    free_text: Text | None = None

    @property
    def item_keys(self) -> list[str]:
        return [item.key for item in self.items]

    @property
    def reverse_keys(self) -> list[str]:
        return [item.key for item in self.items if item.reverse]

    def item(self, key: str) -> Item:
        for item in self.items:
            if item.key == key:
                return item
        raise KeyError(f"instrument {self.key} has no item {key!r}")


class InstrumentError(ValueError):
    """A broken instrument: which file or form, which item (if any), and what to fix."""

    def __init__(self, source: str, item: str | None, reason: str) -> None:
        self.source, self.item, self.reason = source, item, reason
        where = f"{source}: item {item}" if item is not None else source
        super().__init__(f"{where}: {reason}")


_AGREEMENT = {
    "strongly_disagree": Text("Strongly disagree", "Totalmente en desacuerdo"),
    "disagree": Text("Disagree", "En desacuerdo"),
    "somewhat_disagree": Text("Somewhat disagree", "Algo en desacuerdo"),
    "neutral": Text("Neither agree nor disagree", "Ni de acuerdo ni en desacuerdo"),
    "somewhat_agree": Text("Somewhat agree", "Algo de acuerdo"),
    "agree": Text("Agree", "De acuerdo"),
    "strongly_agree": Text("Strongly agree", "Totalmente de acuerdo"),
}
_AGREEMENT_POINTS = {
    5: ("strongly_disagree", "disagree", "neutral", "agree", "strongly_agree"),
    7: tuple(_AGREEMENT),
}


def agreement_labels(points: int) -> list[Text]:
    if points not in _AGREEMENT_POINTS:
        raise ValueError(f"agreement scales have 5 or 7 points, not {points}")
    return [_AGREEMENT[name] for name in _AGREEMENT_POINTS[points]]


_TYPE_WORDS = {"object": "a table", "array": "a list", "str": "text", "int": "a whole number",
               "bool": "true or false", "float": "a decimal number", "null": "nothing"}


def _from_validation_error(exc: msgspec.ValidationError, raw: Any, source: str) -> InstrumentError:
    """Turn msgspec's `... - at `$.items[2].text`` into an operator's sentence naming the item."""
    found = re.fullmatch(r"(?P<msg>.*?)(?: - at `\$(?P<path>.*)`)?", str(exc), re.S)
    message, path = found["msg"], (found["path"] or "")
    item = None
    in_item = re.match(r"\.items\[(\d+)\]", path)
    if in_item:
        index = int(in_item[1])
        path = path[in_item.end():]
        try:
            key = raw["items"][index]["key"]
        except (KeyError, IndexError, TypeError):
            key = None
        item = key if isinstance(key, str) and key else f"#{index + 1}"
    path = path.lstrip(".")
    if field := re.fullmatch(r"Object missing required field `(.*)`", message):
        reason = f"{'.'.join(filter(None, [path, field[1]]))} is missing; add it"
    elif field := re.fullmatch(r"Object contains unknown field `(.*)`", message):
        reason = f"{'.'.join(filter(None, [path, field[1]]))} is not a known field; check its spelling"
    elif types := re.fullmatch(r"Expected `(.*)`, got `(.*)`", message):
        expected, got = (" or ".join(_TYPE_WORDS.get(w, w) for w in t.split(" | ")) for t in types.groups())
        reason = f"{path or 'the instrument'} should be {expected}, not {got}"
    else:
        reason = f"{path}: {message}" if path else message
    return InstrumentError(source, item, reason)


def _check_text(text: Text, field: str, source: str, item: str | None = None) -> None:
    en, es = not text.en.strip(), not text.es.strip()
    if en and es:
        raise InstrumentError(source, item, f"{field} is empty; write the text members will see")
    if en or es:
        raise InstrumentError(source, item, f"{field}.{'en' if en else 'es'} is empty")


def _validate(instrument: Instrument, source: str) -> None:
    slug_rule = "use lowercase letters, digits and _, starting with a letter, at most 40 characters"
    if not SLUG.fullmatch(instrument.key):
        raise InstrumentError(source, None, f"key {instrument.key!r} is not a valid key; {slug_rule}")
    if instrument.version < 1:
        raise InstrumentError(source, None, f"version must be 1 or more, not {instrument.version}")
    _check_text(instrument.name, "name", source)
    _check_text(instrument.description, "description", source)
    if instrument.free_text is not None:
        _check_text(instrument.free_text, "free_text", source)
    _validate_scale(instrument, source)
    if not 1 <= len(instrument.items) <= MAX_ITEMS:
        raise InstrumentError(
            source, None, f"has {len(instrument.items)} items; an instrument needs 1 to {MAX_ITEMS}"
        )
    seen: set[str] = set()
    for item in instrument.items:
        if not SLUG.fullmatch(item.key):
            raise InstrumentError(source, item.key or "#?", f"key {item.key!r} is not valid; {slug_rule}")
        if item.key in seen:
            raise InstrumentError(source, item.key, "key is used twice; give each item its own key")
        seen.add(item.key)
        _check_text(item.text, "text", source, item.key)
    _validate_dimensions(instrument, source)


def _validate_scale(instrument: Instrument, source: str) -> None:
    kind, points, labels = instrument.scale.kind, instrument.scale.points, instrument.scale.labels
    if kind not in SCALE_KINDS:
        raise InstrumentError(source, None, f"scale.kind {kind!r} is unknown; use one of: {', '.join(SCALE_KINDS)}")
    if kind == AGREEMENT and points not in SCALE_POINTS:
        raise InstrumentError(source, None, f"scale.points must be 5 or 7, not {points}")
    if kind == ZERO_TO_TEN and points != 11:
        raise InstrumentError(source, None, f"a 0-10 scale has 11 points (0 to 10), not {points}")
    low, high = CHOICE_OPTIONS
    if kind == CHOICE and not low <= points <= high:
        raise InstrumentError(source, None, f"a single choice needs {low} to {high} options, not {points}")
    wanted = 2 if kind == ZERO_TO_TEN else points
    if len(labels) != wanted:
        what = "give a label for each end (0 and 10)" if kind == ZERO_TO_TEN else "give one label per point"
        raise InstrumentError(source, None, f"scale has {len(labels)} labels for {points} points; {what}")
    for number, label in enumerate(labels, start=1):
        _check_text(label, f"scale label {number}", source)
    if kind == CHOICE and len({label.en.strip().casefold() for label in labels}) != len(labels):
        raise InstrumentError(source, None, "two options have the same text; give each option its own")
    reversed_items = [item.key for item in instrument.items if item.reverse]
    if kind != AGREEMENT and reversed_items:
        scale = "a 0-10 scale" if kind == ZERO_TO_TEN else "a single choice"
        raise InstrumentError(source, reversed_items[0], f"{scale} cannot be reversed; only agreement statements can")
    if kind != AGREEMENT and any(item.dimension for item in instrument.items):
        raise InstrumentError(source, None, "only agreement statements can feed the vitality dimensions")


def _validate_dimensions(instrument: Instrument, source: str) -> None:
    known = ", ".join(DIMENSIONS)
    dimensioned = [item for item in instrument.items if item.dimension]
    if not dimensioned:
        if instrument.key == "vitality":
            raise InstrumentError(source, None, f"every vitality item needs a dimension: {known}")
        return
    for item in instrument.items:
        if not item.dimension:
            reason = "dimension is missing; other items have one, so every item must"
            raise InstrumentError(source, item.key, reason)
        if item.dimension not in DIMENSIONS:
            reason = f"dimension {item.dimension!r} is unknown; use one of: {known}"
            raise InstrumentError(source, item.key, reason)
    # A dimensioned instrument feeds the vitality profile, which needs a score on every dimension.
    missing = ", ".join(d for d in DIMENSIONS if d not in {item.dimension for item in dimensioned})
    if missing:
        raise InstrumentError(source, None, f"no item covers dimension(s) {missing}; add at least one each")


def parse_instrument(raw: bytes | str | dict, source: str) -> Instrument:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"is not UTF-8 text ({exc.reason} at byte {exc.start})"
            raise InstrumentError(source, None, reason) from None
    if isinstance(raw, str):
        try:
            raw = tomllib.loads(raw)
        except tomllib.TOMLDecodeError as exc:
            raise InstrumentError(source, None, f"is not valid TOML: {exc}") from None
    try:
        instrument = msgspec.convert(raw, Instrument)
    except msgspec.ValidationError as exc:
        raise _from_validation_error(exc, raw, source) from None
    _validate(instrument, source)
    return instrument


def load_instrument(path: Path) -> Instrument:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InstrumentError(str(path), None, f"cannot be read: {exc.strerror}") from None
    return parse_instrument(data, Path(path).name)


@functools.cache
def _load_builtins() -> dict[str, Instrument]:
    found: dict[str, Instrument] = {}
    for path in sorted(INSTRUMENTS_DIR.glob("*.toml")):
        instrument = load_instrument(path)
        if instrument.key != path.stem:
            reason = f"key {instrument.key!r} must match the file name {path.stem!r}"
            raise InstrumentError(path.name, None, reason)
        found[instrument.key] = instrument
    return found


def builtin_instruments() -> dict[str, Instrument]:
    return dict(_load_builtins())  # a copy, so a caller cannot change the cached set


_CUSTOM_DESCRIPTION = {
    "en": "A survey written by this community's facilitator.",
    "es": "Una encuesta redactada por quien facilita esta comunidad.",
}


# The ends of a 0..10 scale when the facilitator names none: the eNPS wording.
LIKELY_ENDS = (Text("Not at all likely", "Nada probable"), Text("Extremely likely", "Muy probable"))


def custom_instrument(
    key: str,
    name: str,
    points: int,
    items: list[tuple[str, str, bool]],
    free_text: str | None,
    language: str = "en",
    kind: str = AGREEMENT,
    labels: list[str] | None = None,
) -> Instrument:
    """A facilitator's instrument from the builder's form. `points` matters for agreement (5 or 7);
    `labels` are a choice's options, or a 0..10 scale's two ends (blank: LIKELY_ENDS)."""
    source = f"custom instrument {key!r}"
    language = _base_language(language)
    if language not in _CUSTOM_DESCRIPTION:
        raise InstrumentError(source, None, f"language must be en or es, not {language!r}")
    if kind not in SCALE_KINDS:
        raise InstrumentError(source, None, f"scale.kind {kind!r} is unknown; use one of: {', '.join(SCALE_KINDS)}")
    if kind == AGREEMENT and points not in SCALE_POINTS:
        raise InstrumentError(source, None, f"scale.points must be 5 or 7, not {points}")

    def same(text: str) -> dict[str, str]:
        # The facilitator writes in one language; members see that text whatever their locale.
        return {"en": text, "es": text}

    written = [label.strip() for label in labels or [] if label and label.strip()]
    if kind == AGREEMENT:
        scale = {"points": points, "labels": [msgspec.to_builtins(t) for t in agreement_labels(points)]}
    elif kind == ZERO_TO_TEN:
        if written and len(written) != 2:
            raise InstrumentError(source, None, "name both ends of the 0-10 scale, or neither")
        ends = [same(text) for text in written] or [msgspec.to_builtins(t) for t in LIKELY_ENDS]
        scale = {"kind": kind, "points": 11, "labels": ends}
    else:
        scale = {"kind": kind, "points": len(written), "labels": [same(text) for text in written]}
    raw = {
        "key": key,
        "version": 1,
        "name": same(name),
        "description": same(_CUSTOM_DESCRIPTION[language]),
        "scale": scale,
        "items": [{"key": k, "text": same(text), "reverse": reverse} for k, text, reverse in items],
        # A blank open question on the form means "no open question", not an error.
        "free_text": same(free_text) if free_text and free_text.strip() else None,
    }
    return parse_instrument(raw, source)


def instrument_to_dict(instrument: Instrument) -> dict:
    return msgspec.to_builtins(instrument)
