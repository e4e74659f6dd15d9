"""`autograder export DIR --canvas ROSTER.csv`: the file Canvas's gradebook import reads, who is
matched by which roster column, and every unmatched student named, from a grades.csv as the
report pass writes it (no grading here)."""
from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.cli import main
from conftest import ROOT

GRADES_HEADER = ["student", "Linear", "softmax", "one_layer_net", "train_online", "template_update", "train_minibatch",
                 "total", "max_total", "late_days", "late_penalty", "status"]
ROSTER_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 1 (101)", "Current Score",
                 "Final Score"]
POINTS = ["    Points Possible", "", "", "", "", "10.00", "(read only)", "(read only)"]
TEST_STUDENT = ["Student, Test", "999", "", "", "Section 1", "", "", ""]


def graded_dir(folder: Path, totals: dict[str, float], max_total: float = 30) -> Path:
    """An output folder holding grades.csv as the report pass writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(GRADES_HEADER)
        for student, total in totals.items():
            writer.writerow([student, 0, total, "", "", "", "", total, max_total, 0, 0, "ok"])
    return folder


def roster(path: Path, rows: list[list[str]], points: bool = True, delimiter: str = ",") -> Path:
    """A gradebook CSV as Canvas exports it (with the byte-order mark Canvas writes)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(ROSTER_HEADER)
    if points:
        writer.writerow(POINTS)
    writer.writerows(rows)
    path.write_text("\ufeff" + buffer.getvalue(), encoding="utf-8")
    return path


def person(name: str, canvas_id: str = "", sis_user: str = "", login: str = "") -> list[str]:
    return [name, canvas_id, sis_user, login, "Section 1", "7.00", "70", "70"]


def export(capsys, out: Path, roster_path: Path, target: Path, *extra: str) -> tuple[int, list[list[str]], str]:
    """(exit status, the rows of FILE, stderr) of `autograder export`."""
    code = main(["--course", str(ROOT), "export", str(out), "--canvas", str(roster_path), "--assignment",
                 "Lab 3 autograded", "--out", str(target), *extra])
    err = capsys.readouterr().err
    rows = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8")))) if target.exists() else []
    return code, rows, err


def test_the_file_has_canvas_import_columns_keeps_points_possible_and_names_the_unmatched(tmp_path, capsys):
    out = graded_dir(tmp_path / "graded", {"alice": 27.5, "bob": 12, "carol": 30})
    path = roster(tmp_path / "roster.csv", [person("Doe, Alice", "11", "S11", "alice"),
                                            person("Roe, Bob", "12", "S12", "bob"),
                                            person("Poe, Dave", "14", "S14", "dave"), TEST_STUDENT])
    code, rows, err = export(capsys, out, path, tmp_path / "canvas.csv")
    assert code == 1
    # Canvas's importer: Student then ID, SIS User ID and SIS Login ID, Section last of the student
    # columns, then the assignment; a row whose Student cell says "Points Possible" gives its points.
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 3 autograded"]
    assert rows[1] == ["    Points Possible", "", "", "", "", "30"]
    graded = {row[3]: row[5] for row in rows[2:]}
    assert graded == {"alice": "27.5", "bob": "12", "dave": "", "": ""}
    assert rows[2][:5] == ["Doe, Alice", "11", "S11", "alice", "Section 1"]
    assert "carol" in err and "not in" in err  # graded, but Canvas does not list her
    assert "Poe, Dave" in err and "not graded" in err  # listed, but not graded
    assert "Test" not in err  # Canvas's own test student is not a missing student


def test_every_student_matched_exits_0_and_a_roster_without_points_row_gets_none(tmp_path, capsys):
    out = graded_dir(tmp_path / "graded", {"alice": 3})
    path = roster(tmp_path / "roster.csv", [person("Doe, Alice", "11", "S11", "alice")], points=False)
    code, rows, err = export(capsys, out, path, tmp_path / "canvas.csv")
    assert code == 0, err
    assert rows == [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 3 autograded"],
                    ["Doe, Alice", "11", "S11", "alice", "Section 1", "3"]]


@pytest.mark.parametrize("column", ["SIS Login ID", "SIS User ID", "ID"])
def test_students_are_matched_by_each_id_column(tmp_path, capsys, column):
    ids = {"ID": "9001", "SIS User ID": "S-9001", "SIS Login ID": "jdoe"}
    out = graded_dir(tmp_path / "graded", {ids[column]: 21})
    others = {c: f"other-{c}" for c in ids if c != column}
    row = person("Doe, Jane", **{"canvas_id": others.get("ID", ids["ID"]),
                                 "sis_user": others.get("SIS User ID", ids["SIS User ID"]),
                                 "login": others.get("SIS Login ID", ids["SIS Login ID"])})
    code, rows, err = export(capsys, out, roster(tmp_path / "roster.csv", [row]), tmp_path / "canvas.csv")
    assert code == 0, err
    assert rows[2][5] == "21"


def test_login_id_comes_first_and_match_picks_one_column(tmp_path, capsys):
    # One roster row whose login is one graded id and whose Canvas ID is another.
    out = graded_dir(tmp_path / "graded", {"u2": 5, "777": 9})
    path = roster(tmp_path / "roster.csv", [person("Doe, Jane", "777", "", "u2")])
    code, rows, err = export(capsys, out, path, tmp_path / "first.csv")
    assert code == 1 and rows[2][5] == "5" and "777" in err
    code, rows, err = export(capsys, out, path, tmp_path / "by_id.csv", "--match", "ID")
    assert code == 1 and rows[2][5] == "9" and "u2" in err


def test_odd_ids_round_trip(tmp_path, capsys):
    odd = ['o\'brien, "jr"', "zoë", "名前", "a,b", " spaced"]
    out = graded_dir(tmp_path / "graded", {student: 10 + i for i, student in enumerate(odd)})
    path = roster(tmp_path / "roster.csv", [person(f"Name {i}", str(100 + i), "", s) for i, s in enumerate(odd)])
    code, rows, err = export(capsys, out, path, tmp_path / "canvas.csv")
    # Canvas trims the cells it reads; so does the export, so " spaced" is matched as "spaced" and
    # is named as missing from the roster together with its row: never dropped silently.
    assert code == 1 and "' spaced'" in err and "'spaced'" in err
    assert {row[3]: row[5] for row in rows[2:]} == {s: str(10 + i) for i, s in enumerate(odd[:-1])} | {"spaced": ""}


def test_a_semicolon_roster_as_canvas_writes_in_some_locales_is_read(tmp_path, capsys):
    out = graded_dir(tmp_path / "graded", {"alice": 4})
    path = roster(tmp_path / "roster.csv", [person("Doe, Alice", "11", "S11", "alice")], delimiter=";")
    code, rows, err = export(capsys, out, path, tmp_path / "canvas.csv")
    assert code == 0, err
    assert rows[1][0].strip() == "Points Possible" and rows[2][3:] == ["alice", "Section 1", "4"]


def test_bad_input_is_one_line_and_the_command_imports_no_torch(tmp_path):
    out = graded_dir(tmp_path / "graded", {"alice": 4})
    good = roster(tmp_path / "roster.csv", [person("Doe, Alice", "11", "S11", "alice")])
    bad = tmp_path / "bad.csv"
    bad.write_text("Student,Email\nAlice,a@example.org\n")
    cases = {
        "not a Canvas gradebook export: no ID, SIS User ID, SIS Login ID, Section": (out, bad, []),
        "no grades.csv": (tmp_path / "empty", good, []),
        "no column 'Email' to match": (out, good, ["--match", "Email"]),
    }
    (tmp_path / "empty").mkdir()
    script = ("import sys; from autograder.cli import main; code = main(sys.argv[1:]); "
              "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(code)")
    for expected, (folder, path, extra) in cases.items():
        done = subprocess.run([sys.executable, "-c", script, "--course", str(ROOT), "export", str(folder), "--canvas",
                               str(path), "--assignment", "Lab 3", "--out", str(tmp_path / "x.csv"), *extra],
                              capture_output=True, text=True)
        assert done.returncode == 2 and expected in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = subprocess.run([sys.executable, "-c", script, "--course", str(ROOT), "export", str(out), "--canvas",
                           str(good), "--assignment", "Lab 3", "--out", str(tmp_path / "x.csv")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
