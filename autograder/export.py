"""`autograder export`: the final totals of a graded class as a CSV that Canvas's gradebook imports.

Canvas's importer (GradebookImporter in canvas-lms) reads a header row whose first columns are
`Student,ID` then `SIS User ID,SIS Login ID` and ends its student columns with `Section`; every
column after them is an assignment (a new one is created from a name that matches none; `NAME
(1234)` names assignment 1234). A row whose Student cell holds "Points Possible" gives the
assignments' points, and an empty cell leaves a grade unchanged. It finds each student by ID,
then SIS User ID, then SIS Login ID, so the file carries all three from the roster Canvas exported.

The totals come from DIR/grades.csv, which the last report pass wrote: no grading code runs here.
Every class student missing from the roster, and every roster student without a grade, is named;
none is left out of the count silently.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

IDENTITY = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]  # Canvas's student columns, in order
MATCH_ORDER = ["SIS Login ID", "SIS User ID", "ID"]
POINTS_POSSIBLE = "Points Possible"
TEST_STUDENT = {"Student, Test", "Test Student"}  # Canvas's student view user, in every roster


class ExportError(ValueError):
    """A roster or output folder that cannot be exported; the message says why."""


@dataclass
class Export:
    """What an export wrote (`text`) and who was left unmatched on either side."""
    text: str
    matched: int
    not_in_roster: list[str] = field(default_factory=list)  # graded students Canvas does not list
    not_graded: list[str] = field(default_factory=list)  # roster students without a total


def read_grades(out: Path) -> tuple[dict[str, str], str]:
    """student -> final total (as grades.csv writes it), and the class's max_total."""
    path = out / "grades.csv"
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except FileNotFoundError:
        raise ExportError(f"{out}: no grades.csv (grade the class first, or run `autograder report {out}`)") from None
    if not rows or not {"student", "total", "max_total"} <= set(rows[0]):
        raise ExportError(f"{path}: not a grades.csv written by `autograder grade` (no student, total, max_total)")
    totals = {row["student"]: row["total"] for row in rows}
    max_total = max((row["max_total"] for row in rows), key=float)
    return totals, max_total


def read_roster(path: Path) -> tuple[list[str], list[dict[str, str]], list[str] | None]:
    """(header, student rows, the points-possible row or None) of a gradebook CSV Canvas exported;
    comma- or semicolon-separated, as Canvas writes it in each locale."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ExportError(f"{path}: no such roster file") from None
    except UnicodeDecodeError:
        raise ExportError(f"{path}: not UTF-8 text; export the gradebook from Canvas again") from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if len(next(csv.reader([first], delimiter=";"), [])) > len(next(csv.reader([first]), [])) else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    if not rows:
        raise ExportError(f"{path}: empty roster")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in IDENTITY if c not in header]
    if missing:
        raise ExportError(f"{path}: not a Canvas gradebook export: no {', '.join(missing)} column "
                          f"(it needs {','.join(IDENTITY)})")
    points, students = None, []
    for row in rows[1:]:
        if row and POINTS_POSSIBLE in row[0]:
            points = row
        elif any(cell.strip() and not _posting_note(cell) for cell in row):
            students.append(dict(zip(header, (cell.strip() for cell in row))))
    return header, students, points


def _posting_note(cell: str) -> bool:
    """The row Canvas writes under the header with "Muted" / "Manual Posting": not a student."""
    text = cell.strip().lower()
    return text == "muted" or text.startswith("manual posting")


def canvas(out: Path, roster: Path, assignment: str, match: str | None = None) -> Export:
    """The Canvas import file for `assignment`: every roster student with their total (blank for
    those not graded), the points-possible row kept when the roster had one."""
    if not assignment.strip():
        raise ExportError("--assignment must name the Canvas assignment")
    if assignment.strip() in IDENTITY:
        raise ExportError(f"--assignment cannot be {assignment!r}: Canvas reads that column as the student's")
    totals, max_total = read_grades(out)
    header, students, points = read_roster(roster)
    columns = [match] if match else MATCH_ORDER
    if match and match not in header:
        raise ExportError(f"{roster}: no column {match!r} to match students by (columns: {', '.join(header)})")
    matched: dict[int, str] = {}
    taken: set[str] = set()
    for column in columns:  # a student is found by the first column that names them
        for i, row in enumerate(students):
            value = row.get(column, "")
            if i not in matched and value in totals and value not in taken:
                matched[i] = value
                taken.add(value)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*IDENTITY, assignment])
    if points is not None:
        writer.writerow([points[0], "", "", "", "", max_total])
    not_graded = []
    for i, row in enumerate(students):
        writer.writerow([row.get(c, "") for c in IDENTITY] + [totals[matched[i]] if i in matched else ""])
        if i not in matched and row.get("Student") not in TEST_STUDENT:
            not_graded.append(_who(row))
    return Export(buffer.getvalue(), len(matched), sorted(set(totals) - taken), not_graded)


def _who(row: dict[str, str]) -> str:
    ids = ", ".join(f"{c} {row[c]!r}" for c in MATCH_ORDER if row.get(c))
    return f"{row.get('Student') or '(no name)'} ({ids or 'no id'})"
