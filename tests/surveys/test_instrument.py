"""Instruments ship valid, and a broken one is refused with the file, the item and the reason."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surveys.instrument import (
    DIMENSIONS,
    INSTRUMENTS_DIR,
    Instrument,
    InstrumentError,
    Text,
    agreement_labels,
    builtin_instruments,
    custom_instrument,
    instrument_to_dict,
    load_instrument,
    parse_instrument,
)

PS_TOML = (INSTRUMENTS_DIR / "psychological_safety.toml").read_text()


def ps_dict() -> dict:
    return copy.deepcopy(instrument_to_dict(builtin_instruments()["psychological_safety"]))


def broken_file(tmp_path: Path, old: str, new: str) -> Path:
    assert old in PS_TOML, old
    path = tmp_path / "psychological_safety.toml"
    path.write_text(PS_TOML.replace(old, new, 1))
    return path


def refusal(raw, source: str = "test") -> InstrumentError:
    with pytest.raises(InstrumentError) as caught:
        parse_instrument(raw, source)
    return caught.value


# --- the shipped instruments ------------------------------------------------------------------


def test_four_instruments_ship() -> None:
    assert set(builtin_instruments()) == {"psychological_safety", "trust", "vitality", "recommend"}


def test_recommend_is_a_bilingual_zero_to_ten_question() -> None:
    recommend = builtin_instruments()["recommend"]
    assert (recommend.scale.kind, recommend.scale.points, recommend.scale.lowest) == ("zero_to_ten", 11, 0)
    assert [label.get("es") for label in recommend.scale.labels] == ["Nada probable", "Muy probable"]
    assert recommend.items[0].text.get("en") == "How likely are you to recommend this community to a colleague?"
    assert not recommend.reverse_keys


def test_builtin_instruments_are_cached_but_not_shared_mutably() -> None:
    first = builtin_instruments()
    first.pop("trust")
    again = builtin_instruments()
    assert "trust" in again
    assert again["vitality"] is first["vitality"]


@pytest.mark.parametrize("key", ["psychological_safety", "trust", "vitality"])
def test_shipped_instrument_is_bilingual_seven_point_agreement_with_open_question(key: str) -> None:
    instrument = builtin_instruments()[key]
    assert instrument.scale.points == 7
    assert instrument.scale.labels == agreement_labels(7)
    assert instrument.free_text is not None
    for item in instrument.items:
        assert item.text.en.strip() and item.text.es.strip()
        assert item.text.en != item.text.es


def test_psychological_safety_has_seven_items_three_reverse_keyed() -> None:
    instrument = builtin_instruments()["psychological_safety"]
    assert len(instrument.items) == 7
    assert len(instrument.reverse_keys) == 3
    assert instrument.free_text.en == "What one thing would make it safer to speak up here?"


def test_trust_has_five_items_at_most_one_reverse_keyed() -> None:
    instrument = builtin_instruments()["trust"]
    assert len(instrument.items) == 5
    assert len(instrument.reverse_keys) <= 1


def test_vitality_covers_all_five_dimensions_with_one_or_two_items_each() -> None:
    instrument = builtin_instruments()["vitality"]
    counts = {d: sum(item.dimension == d for item in instrument.items) for d in DIMENSIONS}
    assert all(1 <= n <= 2 for n in counts.values()), counts


def test_item_lookup_and_keys() -> None:
    instrument = builtin_instruments()["psychological_safety"]
    assert instrument.item_keys[0] == "ps_mistakes"
    assert instrument.item("ps_help").reverse is True
    with pytest.raises(KeyError):
        instrument.item("no_such_item")


def test_text_falls_back_to_english() -> None:
    text = Text(en="Agree", es="De acuerdo")
    assert text.get("es") == "De acuerdo"
    assert text.get("es-MX") == "De acuerdo"
    assert text.get("en") == "Agree"
    assert text.get("fr") == "Agree"


# --- broken files name the file, the item and the reason -------------------------------------


def test_duplicate_item_key_is_refused(tmp_path: Path) -> None:
    path = broken_file(tmp_path, 'key = "ps_risk"', 'key = "ps_help"')
    error = pytest.raises(InstrumentError, load_instrument, path).value
    assert (error.source, error.item) == ("psychological_safety.toml", "ps_help")
    assert "used twice" in error.reason


def test_eight_labels_on_seven_points_is_refused(tmp_path: Path) -> None:
    extra = '    { en = "Agree", es = "De acuerdo" },\n'
    path = broken_file(tmp_path, extra, extra * 2)
    error = pytest.raises(InstrumentError, load_instrument, path).value
    assert error.item is None
    assert str(error) == (
        "psychological_safety.toml: scale has 8 labels for 7 points; give one label per point"
    )


def test_empty_spanish_text_is_refused(tmp_path: Path) -> None:
    path = broken_file(tmp_path, 'text.es = "Aquí cuesta pedir ayuda a los demás."', 'text.es = "  "')
    error = pytest.raises(InstrumentError, load_instrument, path).value
    assert str(error) == "psychological_safety.toml: item ps_help: text.es is empty"


def test_six_points_is_refused(tmp_path: Path) -> None:
    path = broken_file(tmp_path, "points = 7", "points = 6")
    error = pytest.raises(InstrumentError, load_instrument, path).value
    assert str(error) == "psychological_safety.toml: scale.points must be 5 or 7, not 6"


def test_unknown_item_field_is_refused(tmp_path: Path) -> None:
    path = broken_file(tmp_path, 'key = "ps_risk"', 'key = "ps_risk"\nreversed = true')
    error = pytest.raises(InstrumentError, load_instrument, path).value
    assert (error.source, error.item) == ("psychological_safety.toml", "ps_risk")
    assert "reversed is not a known field" in error.reason


def test_bad_toml_syntax_is_refused(tmp_path: Path) -> None:
    path = broken_file(tmp_path, "version = 1", "version 1")
    error = pytest.raises(InstrumentError, load_instrument, path).value
    assert error.source == "psychological_safety.toml"
    assert "not valid TOML" in error.reason and "line" in error.reason


def test_unknown_dimension_is_refused() -> None:
    raw = instrument_to_dict(builtin_instruments()["vitality"])
    raw["items"][4]["dimension"] = "risk_free"
    error = refusal(raw, "vitality.toml")
    assert error.item == "vi_admit_gap"
    assert "'risk_free' is unknown" in error.reason and "risk_free_environment" in error.reason


def test_vitality_missing_a_dimension_is_refused() -> None:
    raw = instrument_to_dict(builtin_instruments()["vitality"])
    raw["items"] = [i for i in raw["items"] if i["dimension"] != "technology_enabler"]
    assert "technology_enabler" in refusal(raw, "vitality.toml").reason


def test_dimension_on_some_items_only_is_refused() -> None:
    raw = ps_dict()
    raw["items"][0]["dimension"] = "shared_vision"
    error = refusal(raw)
    assert error.item == "ps_raise_issues" and "dimension is missing" in error.reason


def test_missing_field_names_the_item() -> None:
    raw = ps_dict()
    del raw["items"][2]["text"]["es"]
    assert str(refusal(raw)) == "test: item ps_difference: text.es is missing; add it"


def test_wrong_type_names_the_item_and_the_types() -> None:
    raw = ps_dict()
    raw["items"][1]["reverse"] = "yes"
    assert str(refusal(raw)) == "test: item ps_raise_issues: reverse should be true or false, not text"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.update(key="Psych Safety"), "is not a valid key"),
        (lambda d: d.update(version=0), "version must be 1 or more"),
        (lambda d: d.update(items=[]), "has 0 items"),
        (lambda d: d.update(items=d["items"] * 5), "has 35 items"),
        (lambda d: d["name"].update(en=""), "name.en is empty"),
        (lambda d: d["scale"]["labels"][3].update(en="", es=""), "scale label 4 is empty"),
        (lambda d: d["items"][0].update(key="1st"), "is not valid"),
        (lambda d: d.pop("scale"), "scale is missing"),
        (lambda d: d.update(colour="red"), "colour is not a known field"),
    ],
)
def test_rule_breaking_dict_is_refused(change, reason: str) -> None:
    raw = ps_dict()
    change(raw)
    assert reason in refusal(raw).reason


def test_vitality_without_dimensions_is_refused() -> None:
    raw = instrument_to_dict(builtin_instruments()["vitality"])
    for item in raw["items"]:
        item["dimension"] = ""
    assert "needs a dimension" in refusal(raw).reason


def test_not_utf8_is_refused() -> None:
    assert "not UTF-8" in refusal(b"key = \"\xff\"").reason


def test_missing_file_is_refused(tmp_path: Path) -> None:
    error = pytest.raises(InstrumentError, load_instrument, tmp_path / "gone.toml").value
    assert "cannot be read" in error.reason


def test_error_message_format() -> None:
    assert str(InstrumentError("a.toml", "q1", "bad")) == "a.toml: item q1: bad"
    assert str(InstrumentError("a.toml", None, "bad")) == "a.toml: bad"
    assert isinstance(InstrumentError("a.toml", None, "bad"), ValueError)


# --- custom instruments and round trips -------------------------------------------------------


def test_custom_five_point_instrument_is_valid() -> None:
    instrument = custom_instrument(
        "retro_check",
        "Retro check",
        5,
        [("clear_goals", "Our goals are clear.", False), ("blame", "We look for someone to blame.", True)],
        "Anything else?",
        language="en",
    )
    assert instrument.scale.points == 5
    assert instrument.scale.labels == agreement_labels(5)
    assert instrument.item_keys == ["clear_goals", "blame"]
    assert instrument.reverse_keys == ["blame"]
    assert instrument.item("blame").text.get("es") == "We look for someone to blame."
    assert instrument.free_text.en == "Anything else?"


def test_custom_instrument_blank_open_question_means_none() -> None:
    instrument = custom_instrument("pulse", "Pulso", 7, [("q1", "Me siento parte.", False)], "  ", "es")
    assert instrument.free_text is None
    assert instrument.description.en == instrument.description.es


@pytest.mark.parametrize(
    ("args", "item", "reason"),
    [
        (("pulse", "Pulse", 6, [("q1", "A.", False)], None), None, "must be 5 or 7"),
        (("pulse", "Pulse", 5, [], None), None, "has 0 items"),
        (("pulse", "Pulse", 5, [("q1", "A.", False), ("q1", "B.", False)], None), "q1", "used twice"),
        (("pulse", "Pulse", 5, [("q1", "   ", False)], None), "q1", "text is empty"),
        (("pulse", "", 5, [("q1", "A.", False)], None), None, "name is empty"),
        (("Pulse!", "Pulse", 5, [("q1", "A.", False)], None), None, "not a valid key"),
        (("pulse", "Pulse", 5, [("q1", "A.", "yes")], None), "q1", "should be true or false"),
    ],
)
def test_custom_instrument_rejects_bad_form(args, item, reason: str) -> None:
    with pytest.raises(InstrumentError) as caught:
        custom_instrument(*args)
    assert caught.value.item == item
    assert reason in caught.value.reason
    assert caught.value.source.startswith("custom instrument")


def test_custom_instrument_rejects_unknown_language() -> None:
    with pytest.raises(InstrumentError, match="language must be en or es"):
        custom_instrument("pulse", "Pulse", 5, [("q1", "A.", False)], None, language="fr")


@pytest.mark.parametrize("key", ["psychological_safety", "trust", "vitality"])
def test_builtin_round_trips_through_dict(key: str) -> None:
    instrument = builtin_instruments()[key]
    assert parse_instrument(instrument_to_dict(instrument), "stored") == instrument


slugs = st.from_regex(r"[a-z][a-z0-9_]{0,39}", fullmatch=True)
words = st.text(min_size=1, max_size=60).filter(str.strip)


@given(
    key=slugs,
    name=words,
    points=st.sampled_from([5, 7]),
    items=st.lists(st.tuples(slugs, words, st.booleans()), min_size=1, max_size=30, unique_by=lambda t: t[0]),
    free_text=st.none() | words,
)
def test_any_valid_custom_instrument_round_trips(key, name, points, items, free_text) -> None:
    instrument = custom_instrument(key, name, points, items, free_text)
    assert isinstance(instrument, Instrument)
    assert parse_instrument(instrument_to_dict(instrument), "stored") == instrument
    assert instrument.item_keys == [k for k, _, _ in items]


# --- kinds of scale ------------------------------------------------------------------------------


def test_an_agreement_scale_is_stored_as_before_kinds_existed() -> None:
    stored = ps_dict()
    assert "kind" not in stored["scale"]  # stored custom instruments and round snapshots read the same
    assert parse_instrument(stored, "old").scale.kind == "agreement"


def choice_dict(**scale: object) -> dict:
    raw = ps_dict()
    raw["scale"] = {"kind": "choice", "points": 3, "labels": [{"en": w, "es": w} for w in ("Online", "In person", "Both")]} | scale
    for item in raw["items"]:
        item["reverse"] = False
    return raw


def test_a_single_choice_instrument_parses() -> None:
    instrument = parse_instrument(choice_dict(), "test")
    assert (instrument.scale.kind, instrument.scale.points, instrument.scale.ordered) == ("choice", 3, False)


@pytest.mark.parametrize(("scale", "reason"), [
    ({"kind": "stars"}, "scale.kind 'stars' is unknown"),
    ({"points": 1, "labels": [{"en": "Only", "es": "Solo"}]}, "a single choice needs 2 to 10 options, not 1"),
    ({"points": 4}, "scale has 3 labels for 4 points; give one label per point"),
    ({"labels": [{"en": "Same", "es": "a"}, {"en": "same", "es": "b"}, {"en": "c", "es": "c"}]}, "two options have the same text"),
    ({"kind": "zero_to_ten", "points": 10}, "a 0-10 scale has 11 points (0 to 10), not 10"),
    ({"kind": "zero_to_ten", "points": 11}, "scale has 3 labels for 11 points; give a label for each end (0 and 10)"),
])  # fmt: skip
def test_impossible_scales_are_refused(scale: dict, reason: str) -> None:
    assert reason in refusal(choice_dict(**scale)).reason


@pytest.mark.parametrize("kind", ["choice", "zero_to_ten"])
def test_only_agreement_statements_can_be_reversed(kind: str) -> None:
    raw = choice_dict()
    if kind == "zero_to_ten":
        raw["scale"] = {"kind": kind, "points": 11, "labels": [{"en": "No", "es": "No"}, {"en": "Yes", "es": "Sí"}]}
    raw["items"][1]["reverse"] = True
    error = refusal(raw)
    assert error.item == raw["items"][1]["key"] and "cannot be reversed" in error.reason


def test_custom_zero_to_ten_takes_the_likely_ends_unless_named() -> None:
    plain = custom_instrument("nps", "NPS", 0, [("q1", "Recommend us?", False)], None, "en", kind="zero_to_ten")
    assert [label.en for label in plain.scale.labels] == ["Not at all likely", "Extremely likely"]
    named = custom_instrument("nps", "NPS", 0, [("q1", "¿Volverías?", False)], None, "es", "zero_to_ten", ["Nunca", "Seguro"])
    assert [label.get("es") for label in named.scale.labels] == ["Nunca", "Seguro"] and named.scale.points == 11
    with pytest.raises(InstrumentError, match="both ends"):
        custom_instrument("nps", "NPS", 0, [("q1", "Recommend us?", False)], None, "en", "zero_to_ten", ["Never"])


def test_custom_choice_takes_its_options_and_refuses_one() -> None:
    made = custom_instrument("where", "Where", 0, [("q1", "Where do we meet?", False)], None, "en", "choice", ["Online", " ", "On site"])
    assert [label.en for label in made.scale.labels] == ["Online", "On site"] and made.scale.points == 2
    with pytest.raises(InstrumentError, match="2 to 10 options, not 1"):
        custom_instrument("where", "Where", 0, [("q1", "Where?", False)], None, "en", "choice", ["Online"])
