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


@pytest.mark.parametrize("lookalike", ["a\u0323lice", "\u1ea1lice", "a\u0301lice", "\u00e1lice", "ALI\u0308CE"])
def test_a_name_with_combining_marks_reads_as_the_name_without_them(tmp_path, lookalike):
    """Before (walk, item 5): "ạlice" (a + U+0323), "álice" and "bo̵b" (U+0335) signed in as new people."""
    people.claim_name(tmp_path, "alice", "wonderland")
    with pytest.raises(people.NameTaken, match="reads the same as “alice”"):
        people.claim_name(tmp_path, lookalike, "guessing")
    assert people.claim_name(tmp_path, lookalike, "wonderland") == "alice"
    people.claim_name(tmp_path, "bob", "builder")
    with pytest.raises(people.NameTaken):
        people.claim_name(tmp_path, "bo\u0335b", "guessing")
    assert people.token_names(tmp_path) == {"alice", "bob"}


@pytest.mark.parametrize(
    "name",
    [
        "[prof](http://evil.example)",
        "**chen**",
        "<b>bob</b>",
        "../../etc",
        "dana:red[x]",
        "a/b",
        "x" * 300,
        "_ada",
        "`code`",
        "$x$",
        "eve#1",
    ],
)
def test_a_name_that_is_markup_a_link_or_a_path_is_refused_and_says_why(tmp_path, name):
    """Before (walk, item 6): these were accepted and listed on the Class page; the link one was live."""
    with pytest.raises(people.InvalidInput, match=r"You cannot sign in as .*Choose another name") as refused:
        people.claim_name(tmp_path, name, "passphrase")
    assert len(str(refused.value)) < 300  # a 300-character name is cut short, not echoed whole
    assert people.token_names(tmp_path) == set()


def test_an_admin_resets_a_forgotten_passphrase_and_the_next_sign_in_sets_one(tmp_path):
    people.claim_name(tmp_path, "Dana", "forgotten")
    assert people.reset_passphrase(tmp_path, "DANA", by="prof") == "Dana"
    assert people.registered(tmp_path)[0]["state"].startswith("reset")
    assert people.claim_name(tmp_path, "dana", "new one") == "Dana"  # keeps its first spelling
    with pytest.raises(people.WrongPassphrase) as wrong:
        people.claim_name(tmp_path, "dana", "forgotten")
    assert wrong.value.registered == "Dana"
    assert [(e["action"], e["name"], e["by"]) for e in people.events(tmp_path)] == [("reset", "Dana", "prof")]
    with pytest.raises(people.NotFound):
        people.reset_passphrase(tmp_path, "nobody", by="prof")


def test_an_admin_removes_a_squatted_lookalike_and_the_real_person_takes_the_name(tmp_path):
    """Before (walk, item 4): "gіna" with a Cyrillic і, claimed first, blocked the real gina forever."""
    people.claim_name(tmp_path, "g\u0456na", "squatter")
    with pytest.raises(people.NameTaken):
        people.claim_name(tmp_path, "gina", "the real one")
    assert people.remove_name(tmp_path, "gina", by="prof") == "g\u0456na"
    assert people.token_names(tmp_path) == set()
    assert people.claim_name(tmp_path, "gina", "the real one") == "gina"
    with pytest.raises(people.NameTaken):
        people.claim_name(tmp_path, "g\u0456na", "squatter")
    with pytest.raises(people.NotFound):
        people.remove_name(tmp_path, "nobody", by="prof")


def test_names_kept_from_before_the_rule_are_listed_for_an_admin_to_remove(tmp_path):
    """A markup name and a combining-mark look-alike written under the old rules stay theirs (their own passphrase),
    and the admin's list says what is wrong with each."""
    from core.shared_store import SharedStore

    people.claim_name(tmp_path, "alice", "wonderland")
    salt = "00" * 16
    with SharedStore.of_data(tmp_path).write(people.PEOPLE) as db:  # as the old code wrote them
        for old_key, name in (("**chen**", "**chen**"), ("a\u0323lice", "a\u0323lice")):
            db.execute(
                "INSERT INTO people (key, name, how, salt, hash) VALUES (?, ?, 'token', ?, ?)",
                (old_key, name, salt, people._hash("old-pass", bytes.fromhex(salt))),
            )
    people._REKEYED.clear()
    rows = {row["name"]: row for row in people.registered(tmp_path)}
    assert rows["**chen**"]["breaks_rule"] and rows["alice"]["breaks_rule"] is None
    assert rows["a\u0323lice"]["looks_like"] == "alice" and rows["alice"]["looks_like"] is None
    assert people.claim_name(tmp_path, "a\u0323lice", "old-pass") == "a\u0323lice"  # still theirs, by its spelling
    assert people.claim_name(tmp_path, "**chen**", "old-pass") == "**chen**"
    people.remove_name(tmp_path, "**chen**", by="prof")
    people.remove_name(tmp_path, "a\u0323lice", by="prof")
    assert people.token_names(tmp_path) == {"alice"}


def test_a_character_beyond_the_first_65536_shows_as_its_full_code():
    """Before (walk, item 15): a tag character showed as "alice\\ue0061", a code that is not its own."""
    from pages.ui import plain

    assert plain.visible("alice\U000e0061") == "alice\\U000e0061"
