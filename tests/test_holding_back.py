"""A photo that looks like none of the classes: held back with that reason first wherever anything could hold it
back, and its prediction set shown as not to be trusted (the JSON adds fields, renames none; the table adds a
column)."""

from __future__ import annotations

import numpy as np
import pytest

from core.results.probabilities import conformal
from core.serving.batch_predict import BatchItem, table_rows
from core.serving.engine import Answer
from core.serving.holding_back import FOREIGN_REASON, hold_back


def _answer(flag: bool | None, label: str = "tulip", p: float = 0.56, chosen: list[str] | None = None) -> Answer:
    other = "rose" if label == "tulip" else "tulip"
    return Answer(
        probabilities=np.array([p, 1 - p]),
        label=label,
        top=[(label, p), (other, 1 - p)],
        max_probability=p,
        entropy=0.69,
        ood_score=None if flag is None else (3.0 if flag else 0.1),
        ood_flag=flag,
        ood_false_alarms=None if flag is None else 0.1,
        prediction_set=chosen,
        set_level=None if chosen is None else 0.9,
    )


NO_THRESHOLD = "this run has no calibrated threshold"


@pytest.mark.parametrize(
    ("flag", "max_error", "thresholds", "abstained", "reasons"),
    [
        # answer only when sure: the foreign reason first, then the level's own
        (True, 0.05, {}, True, [FOREIGN_REASON, NO_THRESHOLD]),
        (False, 0.05, {}, True, [NO_THRESHOLD]),
        # a class threshold it clears: still held back when it looks like none of the classes
        (True, None, {"tulip": 0.5}, True, [FOREIGN_REASON]),
        (False, None, {"tulip": 0.5}, False, []),
        (True, None, {"tulip": 0.9}, True, [FOREIGN_REASON, "under its saved threshold"]),
        # nothing asked, nothing saved: nothing holds it back, flag or not
        (True, None, {}, None, []),
    ],
)
def test_a_flagged_photo_is_held_back_with_that_reason_first(flag, max_error, thresholds, abstained, reasons):
    answer = _answer(flag)
    hold_back([answer], None, max_error, thresholds)
    assert answer.abstained is abstained
    said = (answer.abstain_reason or "").split("; ")
    assert len([r for r in said if r]) == len(reasons)
    for part, expected in zip(said, reasons, strict=False):
        assert expected in part


def test_a_flagged_photo_s_set_is_kept_but_marked_untrusted_in_json_and_table():
    flagged, plain = _answer(True, chosen=["tulip"]), _answer(False, chosen=["tulip", "rose"])
    shown = flagged.to_dict("image statistics")
    assert shown["prediction_set"]["classes"] == ["tulip"] and shown["prediction_set"]["level"] == 0.9
    assert shown["prediction_set"]["trusted"] is False and "not to be trusted" in shown["prediction_set"]["note"]
    assert shown["out_of_distribution"]["flag"] is True and shown["out_of_distribution"]["false_alarms"] == 0.1
    unflagged = plain.to_dict()["prediction_set"]
    assert unflagged["trusted"] is True  # and what that rests on (walk 52: read as an endorsement of a sunflower's set)
    assert unflagged["note"].startswith("trusted means only that the photo was not flagged as unlike the run's classes")
    assert unflagged["note"].endswith("the check lets some photos of other kinds through")  # nothing measured here
    plain.ood_let_through = (
        "the check for photos of other kinds lets through about 67% of other photos it was tested on"
    )
    assert plain.to_dict()["prediction_set"]["note"].endswith("lets through about 67% of other photos it was tested on")
    assert "prediction_set" not in _answer(True).to_dict()
    rows = table_rows([BatchItem("grey.png", flagged), BatchItem("rose.jpg", plain), BatchItem("x", error="bad")], 2)
    assert [row["set_trusted"] for row in rows] == [False, True, ""]
    assert rows[0]["set_size"] == 1 and rows[0]["prediction_set"] == "tulip"


def test_the_set_in_words_for_a_flagged_photo_promises_nothing():
    said = conformal.set_words(["tulip"], 2, 0.9, (11, 18), foreign=True)
    assert said.startswith("tulip: not to be trusted") and "9 times in 10" not in said and "11 of 18" not in said
    assert "not to be trusted" not in conformal.set_words(["tulip"], 2, 0.9, (11, 18))


def test_an_answer_at_a_level_carries_the_promise_and_how_fragile_it_is():
    """Walk 42: the server's answers at a level said nothing of a promise found in few halvings; Predict did."""
    from core.results.probabilities import selective as sel
    from tests.results.probabilities.test_selective import _fragile_fit

    near = _fragile_fit(0.05).nearest
    fitted = _fragile_fit(near["max_error"])
    assert fitted.threshold_at(near["max_error"]) is not None and fitted.spread.fragile
    sure, unsure = _answer(False, p=0.999), _answer(False, p=0.34)
    hold_back([sure, unsure], fitted, near["max_error"], {})
    assert sure.abstained is False and unsure.abstained is True
    said = sure.to_dict()["guarantee"]
    assert said.startswith(
        f"with probability at least 90% over the test photos it calibrated on, at most {near['max_error']:.0%}"
    )
    assert said.endswith("; but " + sel.fragile_words(fitted.spread_at(near["max_error"])))
    assert unsure.to_dict()["guarantee"] == said and "guarantee" not in _answer(False).to_dict()
    nothing = _answer(False)
    hold_back([nothing], fitted, 0.01, {})  # no threshold at 1%: the reason says so, no promise is quoted
    assert nothing.abstained and "guarantee" not in nothing.to_dict()
