"""A TA's semester, the way a TA does it (the command line): one nbgrader class of labs 01 and 02
graded once, then review, an override, regrades of one student and of everyone, late work, an
extension. The final grade applies the gradebook, the course's late policy and the overrides, and
a regrade replaces only the first.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograder.gradebook import Gradebook
from conftest import code, copy_course, data_environment, in_background, shared_root, write_student

DUE = "2026-10-07T23:59:00+00:00"
ON_TIME, TWO_DAYS_LATE = "2026-10-07 20:00:00.000000 UTC", "2026-10-09 05:00:00.000000 UTC"
# Any folder name is a student: verbatim, CSV-quoted, HTML-escaped; names the output needs get a row.
ODD_NAMES = ("José Núñez", "o'brien, <b>bob & co; DROP", "grades.csv", "gradebook.sqlite")
FLAGGED = code("""
    def softmax(x, dim=-1):
        e = eval("torch.exp")(x - x.amax(dim=dim, keepdim=True))
        return e / e.sum(dim=dim, keepdim=True)
    """)


def autograder(course: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(course), *args], capture_output=True,
                          text=True, timeout=900, env={**os.environ, **data_environment()})
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def rows(out: Path) -> dict[str, dict]:
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.suffix in (".json", ".html", ".csv") and p.name != "summary.html"}


def graded_at(out: Path) -> dict[tuple[str, str], float]:
    book = Gradebook(out / "gradebook.sqlite")
    try:
        return {(s, lab): t for s, lab, t in book.db.execute("SELECT student, lab, graded_at FROM labs")}
    finally:
        book.close()


def submit(submitted: Path, student: str, moment: str, softmax: str | None = None) -> None:
    """An nbgrader exchange's submitted/<student>/<assignment>/ folders, each with its timestamp."""
    folder = write_student(submitted.parent / "scratch", student, ["lab01", "lab02"],
                           {"softmax": softmax} if softmax else None)
    for notebook in folder.glob("*.ipynb"):
        assignment = "lab01_linear_module" if notebook.name.startswith("linear") else "lab02_softmax"
        target = submitted / student / assignment
        target.mkdir(parents=True)
        shutil.move(notebook, target / notebook.name)
        (target / "timestamp.txt").write_text(moment)


CLASS: list = []


def start_early(config) -> None:
    """The class graded, then its copy overridden and regraded, in the background (tests/conftest.py)."""
    if not CLASS:
        CLASS.append(in_background(the_semester))


def the_semester() -> tuple[dict, dict]:
    root = Path(tempfile.mkdtemp(prefix="semester-", dir=shared_root()))
    course = copy_course(root / "course").root
    with open(course / "course.toml", "a") as f:
        f.write(f'\n[labs.lab02_softmax]\ndue = "{DUE}"\n\n[late]\nper_day = 0.1\nmax_days = 7\n')
    submitted = root / "exchange" / "submitted"
    submit(submitted, "alice", ON_TIME)
    submit(submitted, "bob", ON_TIME)
    submit(submitted, "carol", TWO_DAYS_LATE)
    submit(submitted, "flagged", ON_TIME, FLAGGED)
    for name in ODD_NAMES:
        submit(submitted, name, ON_TIME)
    out = root / "graded"
    grading = ["grade", str(submitted), "--out", str(out), "-j", "2", "--device", "cpu", "-q"]
    autograder(course, *grading)
    first = {"rows": rows(out), "files": snapshot(out), "graded_at": graded_at(out)}
    semester = {"course": course, "submitted": submitted, "out": out, "grading": grading, "first": first}
    return semester, overridden_copy(semester, root / "overridden" / "graded")


@pytest.fixture(scope="module")
def semester(request) -> dict:
    start_early(request.config)
    return CLASS[0].result()[0]


@pytest.fixture(scope="module")
def overridden(semester) -> dict:
    return CLASS[0].result()[1]


def overridden_copy(semester: dict, out: Path) -> dict:
    """A copy of the class's output, where a TA accepted the flagged softmax, then regraded bob
    alone (by his folder), then everyone, then one lab of one student."""
    shutil.copytree(semester["out"], out)
    course, submitted = semester["course"], semester["submitted"]
    said = autograder(course, "override", str(out), "flagged", "softmax", "15", "--reason", "eval of a name only",
                      "--by", "ta").stdout
    after_override = {"rows": rows(out), "files": snapshot(out)}
    autograder(course, "grade", str(submitted / "bob"), "--out", str(out), "--regrade", "--device", "cpu", "-q")
    after_bob = {"rows": rows(out), "files": snapshot(out), "graded_at": graded_at(out)}
    autograder(course, "grade", str(submitted), "--out", str(out), "--device", "cpu", "-q")
    after_all = {"rows": rows(out), "files": snapshot(out), "graded_at": graded_at(out)}
    autograder(course, "grade", str(submitted), "--out", str(out), "--regrade", "--student", "flagged", "--lab",
               "lab02_softmax", "--device", "cpu", "-q")
    after_one_lab = {"rows": rows(out), "graded_at": graded_at(out)}
    return {"out": out, "said": said, "override": after_override, "bob": after_bob, "all": after_all,
            "one_lab": after_one_lab}


def test_the_class_is_graded_on_both_labs(semester):
    table = semester["first"]["rows"]
    assert set(table) == {"alice", "bob", "carol", "flagged", *ODD_NAMES}
    assert table["alice"]["total"] == "30" and table["alice"]["max_total"] == "30" and table["alice"]["status"] == "ok"


def test_any_folder_name_is_a_student_and_stops_no_one(semester):
    out, table = semester["out"], semester["first"]["rows"]
    for name in ("José Núñez", "o'brien, <b>bob & co; DROP"):
        assert table[name]["total"] == "30" and table[name]["status"] == "ok"
        assert json.loads((out / name / "results.json").read_text())["score"] == 30
    for name in ("grades.csv", "gradebook.sqlite"):
        assert table[name]["total"] == "0" and table[name]["status"].startswith("not graded: a student folder cannot "
                                                                                 f"be named {name!r}")
    assert (out / "grades.csv").is_file() and Gradebook(out / "gradebook.sqlite").students()  # still the class's
    summary = (out / "summary.html").read_text()
    assert "o&#x27;brien, &lt;b&gt;bob &amp; co; DROP" in summary and "<b>bob" not in summary
    assert "Jos%C3%A9%20N%C3%BA%C3%B1ez/feedback.html" in summary


def test_a_flagged_unit_is_in_the_review_queue_with_how_to_act(semester):
    said = autograder(semester["course"], "review", str(semester["out"])).stdout
    assert "flagged: review: softmax uses eval" in said
    assert f"autograder override {semester['out']} STUDENT UNIT POINTS --reason TEXT" in said
    summary = (semester["out"] / "summary.html").read_text()
    assert "review: softmax uses eval" in summary and "class=flag" in summary  # the unit, its flagged line marked


def test_late_work_loses_a_fraction_of_the_lab_per_day(semester):
    table = semester["first"]["rows"]
    assert table["alice"]["late_days"] == "0" and table["alice"]["late_penalty"] == "0"
    carol = table["carol"]
    assert carol["softmax"] == "12" and carol["total"] == "27"  # two days at 10%: 20% of lab 02's 15 points
    assert carol["late_days"] == "2" and carol["late_penalty"] == "3" and "late: lab02_softmax 2 days (-3)" in carol["status"]
    assert "late: lab02_softmax 2 days" in autograder(semester["course"], "review", str(semester["out"])).stdout


def test_an_extension_removes_the_penalty_with_a_report_alone(semester, tmp_path):
    out = tmp_path / "graded"
    shutil.copytree(semester["out"], out)
    extensions = tmp_path / "extensions.csv"
    extensions.write_text("student,lab,days\ncarol,lab02_softmax,2\n")
    said = autograder(semester["course"], "report", str(out), "--extensions", str(extensions)).stdout
    assert rows(out)["carol"]["total"] == "30" and rows(out)["carol"]["late_penalty"] == "0"
    assert "total changed: carol: 27 -> 30" in said
    assert graded_at(out) == semester["first"]["graded_at"], "a report grades nothing"
    autograder(semester["course"], "report", str(out))  # the extensions are kept with the output
    assert rows(out)["carol"]["total"] == "30"


def test_an_override_changes_grades_csv_results_json_and_feedback(overridden, semester):
    before, after = semester["first"]["rows"]["flagged"], overridden["override"]["rows"]["flagged"]
    assert before["softmax"] == "13" and after["softmax"] == "15" and after["total"] == "30"
    assert "overridden: softmax 13 -> 15 (eval of a name only)" in after["status"]
    results = json.loads(overridden["override"]["files"]["flagged/results.json"])
    assert results["score"] == 30 and "Autograded 28, final 30" in results["output"]
    assert "autograded 13" in overridden["override"]["files"]["flagged/feedback.html"].decode()
    assert "total changed: flagged: 28 -> 30" in overridden["said"]
    with open(overridden["out"] / "overrides.csv", newline="") as f:
        assert [(r["student"], r["unit"], r["points"], r["by"]) for r in csv.DictReader(f)] == [
            ("flagged", "softmax", "15", "ta")]


def test_a_one_student_regrade_leaves_every_other_row_byte_equal(overridden, semester):
    before, after = overridden["override"], overridden["bob"]
    for name, data in before["files"].items():
        if not name.startswith("bob/") and name != "grades.csv":
            assert after["files"][name] == data, f"{name} changed when only bob was regraded"
    others = lambda files: [line for line in files["grades.csv"].decode().splitlines() if not line.startswith("bob,")]
    assert others(after["files"]) == others(before["files"]) and len(others(after["files"])) == 4 + len(ODD_NAMES)
    first = semester["first"]["graded_at"]
    assert {s for key, t in after["graded_at"].items() if t != first[key] for s in key[:1]} == {"bob"}


def test_a_regrade_of_one_students_lab_regrades_that_alone(overridden):
    before, after = overridden["all"]["graded_at"], overridden["one_lab"]["graded_at"]
    assert {key for key in after if after[key] != before[key]} == {("flagged", "lab02_softmax")}
    assert overridden["one_lab"]["rows"] == overridden["all"]["rows"]


def test_overrides_survive_a_regrade_of_another_student_and_a_full_rerun(overridden):
    for stage in ("bob", "all", "one_lab"):
        row = overridden[stage]["rows"]["flagged"]
        assert row["softmax"] == "15" and "overridden: softmax 13 -> 15" in row["status"], stage
    assert overridden["all"]["graded_at"] == overridden["bob"]["graded_at"], "a rerun of unchanged work grades nothing"


def test_an_override_of_what_does_not_exist_is_one_line(semester):
    for args, said in ((["nobody", "softmax", "3"], "no student 'nobody'"), (["alice", "softmx", "3"], "no graded unit"),
                       (["alice", "softmax", "16"], "worth 0 to 15")):
        done = autograder(semester["course"], "override", str(semester["out"]), *args, "--reason", "x", check=False)
        assert done.returncode == 2 and said in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (semester["out"] / "overrides.csv").exists()
