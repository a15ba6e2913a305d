"""Names that read as someone else's: invisible and blank characters are refused before the look-alike check
(issue 38, section 3)."""

from __future__ import annotations

import pytest

from core.sharing import people


@pytest.mark.parametrize(
    "extra",
    [
        "\u2800",  # BRAILLE PATTERN BLANK: "alice⠀" showed as a second alice on the Class page (probe)
        "\u3164",  # HANGUL FILLER: "bob" + it could fake "proposed by bob" (probe)
        "\u115f",
        "\u1160",
        "\uffa0",
        "\u200b",
        "\u200d",
        "\u2060",
        "\ufeff",
        "\u00ad",  # soft hyphen
        "\ufe0f",  # a variation selector
        "\U000e0100",
        "\U000e0041",  # a tag
        "\u034f",  # combining grapheme joiner
        "\u17b4",
        "\u180e",
        "\U0001d159",
    ],
)
def test_a_name_holding_an_invisible_or_blank_character_is_refused(tmp_path, extra):
    people.claim_name(tmp_path, "alice", "wonderland")
    for name in (f"alice{extra}", f"ali{extra}ce", f"{extra}alice"):
        with pytest.raises(people.NameTaken, match="invisible characters"):
            people.claim_name(tmp_path, name, "guessing")
    assert people.token_names(tmp_path) == {"alice"}


def test_names_people_write_are_still_theirs(tmp_path):
    for name in ("Zoë", "José María", "李雷", "Ngọc Anh", "O'Brien", "anne-marie", "Ærøskøbing"):
        assert people.claim_name(tmp_path, name, "pikachu") == name


def test_a_name_claimed_before_the_rule_shows_its_blanks_as_codes():
    """Names kept from before are not renamed; the pages show what tells them apart."""
    from pages.ui import plain

    assert plain.md("alice\u2800") == "alice\\\\u2800" and plain.visible("bob\u3164") == "bob\\u3164"
    assert plain.visible("Zoë 李雷") == "Zoë 李雷"
