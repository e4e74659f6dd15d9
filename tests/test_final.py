"""The final grade as one pure function of the facts, the late policy and the overrides (no grading)."""
from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from autograder.final import (Facts, Override, Policy, PolicyError, add_override, check_overrides, final_grade,
                              late_days, read_overrides, read_policy)

UNITS = {"lab01": ("A",), "lab02": ("B", "C")}
POINTS = {"A": 10.0, "B": 10.0, "C": 20.0}
DUE = datetime.datetime(2026, 10, 7, 23, 59, tzinfo=datetime.timezone.utc)


def check(unit: str, lab: str, points: float, passed: bool, rule: bool = False) -> dict:
    return {"unit": unit, "lab": lab, "points": points, "passed": passed, "rule": rule, "label": f"{unit} check",
            "message": "" if passed else "wrong"}


def lab(submitted: datetime.datetime | None = None, **extra) -> dict:
    return {"problem": None, "stopped": None, "notebook": "x.ipynb", "reviews": [], "sandbox": "namespaces",
            "submitted_at": submitted.isoformat() if submitted else None, "due": None, **extra}


def facts(submitted: datetime.datetime | None = None, **labs) -> Facts:
    checks = [check("A", "lab01", 6, True), check("A", "lab01", 4, False),
              check("B", "lab02", 10, True), check("C", "lab02", 20, True)]
    return Facts("ann", {"lab01": lab(submitted), "lab02": lab(submitted), **labs}, checks)


def test_autograded_points_are_the_passed_checks():
    result = final_grade(UNITS, POINTS, facts(), Policy(), [])
    assert result.units == result.auto == {"A": 6, "B": 10, "C": 20}
    assert (result.total, result.max_total, result.status) == (36, 40, "ok")


def test_the_grade_is_the_same_for_the_same_inputs():
    inputs = (UNITS, POINTS, facts(DUE + datetime.timedelta(days=1)), Policy({"lab02": DUE}, per_day=0.1), [])
    assert final_grade(*inputs) == final_grade(*inputs)


def test_an_override_replaces_the_autograded_points_and_says_why():
    result = final_grade(UNITS, POINTS, facts(), Policy(), [Override("ann", "A", 9, "partial credit"),
                                                           Override("bob", "A", 0, "someone else")])
    assert result.auto["A"] == 6 and result.units["A"] == 9 and result.total == 39
    assert result.status == "overridden: A 6 -> 9 (partial credit)"


def test_the_latest_override_of_a_unit_wins():
    result = final_grade(UNITS, POINTS, facts(), Policy(), [Override("ann", "A", 9, "first"),
                                                           Override("ann", "A", 7, "second thoughts")])
    assert result.units["A"] == 7 and "second thoughts" in result.status and "first" not in result.status


@pytest.mark.parametrize("hours,days", [(0, 0), (0.5, 1), (24, 1), (25, 2), (48, 2)])
def test_a_part_of_a_day_counts_as_a_day(hours, days):
    assert late_days(DUE + datetime.timedelta(hours=hours), DUE, grace_minutes=0) == days


def test_grace_minutes_are_not_late():
    assert late_days(DUE + datetime.timedelta(minutes=9), DUE, grace_minutes=10) == 0


def test_two_days_late_at_ten_percent_a_day_loses_a_fifth_of_the_lab():
    result = final_grade(UNITS, POINTS, facts(DUE + datetime.timedelta(hours=30)), Policy({"lab02": DUE}, per_day=0.1), [])
    assert result.units == {"A": 6, "B": 8, "C": 16}  # 20% of each unit of lab02, lab01 has no due date
    assert (result.late_days, result.late_penalty, result.total) == (2, 6, 30)
    assert "late: lab02 2 days (-6)" in result.status


def test_the_penalty_never_takes_more_than_the_unit_has():
    result = final_grade(UNITS, POINTS, facts(DUE + datetime.timedelta(days=3)), Policy({"lab01": DUE}, per_day=0.9), [])
    assert result.units["A"] == 0 and result.late_penalty == 6


def test_later_than_max_days_scores_zero():
    result = final_grade(UNITS, POINTS, facts(DUE + datetime.timedelta(days=5)),
                         Policy({"lab02": DUE}, per_day=0.1, max_days=3), [])
    assert result.units["B"] == result.units["C"] == 0 and "scores 0" in result.status


def test_an_extension_moves_the_due_date():
    late = facts(DUE + datetime.timedelta(hours=30))
    policy = Policy({"lab02": DUE}, per_day=0.1, extensions={("ann", "lab02"): 2})
    assert final_grade(UNITS, POINTS, late, policy, []).late_penalty == 0


def test_a_due_date_the_submission_carries_wins_over_the_course_file():
    own = (DUE + datetime.timedelta(days=7)).isoformat()  # Gradescope: the student's own due date
    result = final_grade(UNITS, POINTS, facts(DUE + datetime.timedelta(days=2), lab02=lab(
        DUE + datetime.timedelta(days=2), due=own)), Policy({"lab02": DUE}, per_day=0.1), [])
    assert result.late_penalty == 0


def test_overrides_come_before_the_late_penalty():
    result = final_grade(UNITS, POINTS, facts(DUE + datetime.timedelta(hours=1)), Policy({"lab01": DUE}, per_day=0.5),
                         [Override("ann", "A", 10, "regraded by hand")])
    assert result.units["A"] == 5  # 10, then half of the unit's 10 points
    assert result.status.index("overridden") < result.status.index("late")


def test_a_total_override_replaces_the_total_before_the_penalty():
    result = final_grade(UNITS, POINTS, facts(DUE + datetime.timedelta(hours=1)), Policy({"lab01": DUE}, per_day=0.5),
                         [Override("ann", "total", 40, "make-up exam")])
    assert result.total == 35 and result.status.startswith("overridden: total 36 -> 40 (make-up exam)")


def test_an_unknown_submission_time_costs_nothing_and_is_said_once():
    result = final_grade(UNITS, POINTS, facts(), Policy({"lab01": DUE, "lab02": DUE}, per_day=0.5), [])
    assert result.late_penalty == 0 and result.status.count("submission time unknown") == 1


def test_a_lab_not_handed_in_scores_zero_and_is_never_late():
    result = final_grade(UNITS, POINTS, facts(DUE + datetime.timedelta(days=1), lab02=lab(notebook=None)),
                         Policy({"lab02": DUE}, per_day=0.1), [])
    assert "no notebook for lab02" in result.status and "late" not in result.status


def test_a_lab_without_a_record_counts_as_not_handed_in():
    only_lab01 = Facts("ann", {"lab01": lab()}, [check("A", "lab01", 10, True)])
    result = final_grade(UNITS, POINTS, only_lab01, Policy(), [])
    assert result.max_total == 40 and result.total == 10 and "no notebook for lab02" in result.status


def test_a_student_not_graded_says_why_and_scores_zero():
    result = final_grade(UNITS, POINTS, Facts("grades.csv", {}, [], "not graded: a reserved name"), Policy(), [])
    assert result.total == 0 and result.status == "not graded: a reserved name"


def test_a_long_reason_is_cut_between_words_and_says_where_the_rest_is():
    problem = "the notebook's code could not be loaded: " + "word " * 100
    result = final_grade(UNITS, POINTS, facts(lab01=lab(problem=problem)), Policy(), [])
    part = next(p for p in result.status.split("; ") if p.startswith("lab01"))
    assert part.endswith("... (the rest in ann/feedback.html)") and " wor ..." not in part


# ---- reading the inputs --------------------------------------------------------------------

def test_the_policy_is_read_from_course_toml():
    policy = read_policy({"labs": {"lab02": {"due": "2026-10-07T23:59:00-04:00"}},
                          "late": {"per_day": 0.1, "max_days": 3, "grace_minutes": 15}}, ["lab01", "lab02"], None)
    assert policy.due["lab02"].utcoffset() == datetime.timedelta(hours=-4)
    assert (policy.per_day, policy.max_days, policy.grace_minutes) == (0.1, 3, 15)


@pytest.mark.parametrize("config,said", [
    ({"labs": {"lab09": {"due": "2026-10-07T23:59:00Z"}}}, "no such lab"),
    ({"labs": {"lab02": {"due": "next tuesday"}}}, "not a date"),
    ({"labs": {"lab02": {"due": "2026-10-07T23:59:00"}}}, "no time zone"),
    ({"late": {"per_day": 10}}, "fraction"),
    ({"late": {"per_day": "a lot"}}, "must be a number"),
    ({"late": {"per_week": 0.1}}, "unknown keys"),
])
def test_a_wrong_policy_is_one_line_saying_where(config, said):
    with pytest.raises(PolicyError, match=said):
        read_policy(config, ["lab01", "lab02"], None)


def test_extensions_are_read_and_checked(tmp_path: Path):
    good = tmp_path / "ext.csv"
    good.write_text("student,lab,days\nann,lab02,2\n\"o'brien, bob\",lab01,1.5\n")
    assert read_policy({}, ["lab01", "lab02"], good).extensions == {("ann", "lab02"): 2, ("o'brien, bob", "lab01"): 1.5}
    bad = tmp_path / "bad.csv"
    bad.write_text("student,lab,days\nann,lab09,2\n")
    with pytest.raises(PolicyError, match="line 2: no lab 'lab09'"):
        read_policy({}, ["lab01", "lab02"], bad)


def test_overrides_round_trip_through_their_csv(tmp_path: Path):
    add_override(tmp_path, Override("José, \"Pepe\"", "A", 7.5, "a reason, with a comma", "ta", "2026-12-01T10:00:00+00:00"))
    add_override(tmp_path, Override("ann", "total", 30, "make-up", "ta", "2026-12-01T10:05:00+00:00"))
    found = read_overrides(tmp_path)
    assert [(o.student, o.unit, o.points, o.reason, o.line) for o in found] == [
        ("José, \"Pepe\"", "A", 7.5, "a reason, with a comma", 2), ("ann", "total", 30, "make-up", 3)]


@pytest.mark.parametrize("override,said", [
    (Override("nobody", "A", 1, "x"), "no student 'nobody'"),
    (Override("ann", "Z", 1, "x"), "no graded unit 'Z'"),
    (Override("ann", "A", 11, "x"), "worth 0 to 10"),
    (Override("ann", "total", 41, "x"), "worth 0 to 40"),
    (Override("ann", "A", 5, " "), "needs a reason"),
])
def test_an_override_of_what_does_not_exist_is_refused(override, said):
    with pytest.raises(PolicyError, match=said):
        check_overrides([override], {"ann": POINTS}, Path("overrides.csv"))
