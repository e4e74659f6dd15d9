"""Finding the submissions in what the grader was given. A submission is one student's notebooks.

- one student's folder: `DIR/*.ipynb`, or the release layout `DIR/<lab folder>/*.ipynb` (what a
  student downloads and uploads again, e.g. to Gradescope); the folder's name is the student id;
- a folder of such folders: `DIR/<student>/...`;
- nbgrader's exchange: `submitted/<student>/<assignment>/*.ipynb` (or the course folder above it),
  with the time of each submission in `<assignment>/timestamp.txt`.

Any folder name is a student id, verbatim (bytes that are not UTF-8 are written as \\xNN). Hidden
folders (`.ipynb_checkpoints`, `.git`) and `__MACOSX` (what macOS leaves in a zip) are not
students. A name that the output folder needs for itself (grades.csv...) is still a student, who
gets a row saying why they were not graded.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

from .course import CourseError

NOT_STUDENTS = {"__MACOSX", "__pycache__"}


@dataclass(frozen=True)
class Submission:
    student: str
    notebooks: tuple[Path, ...]
    problem: str | None = None  # why it cannot be graded at all
    submitted: dict[str, str] = field(default_factory=dict)  # notebook path -> ISO time it was submitted


def student_id(name: str) -> str:
    """A folder name as text, verbatim where it is UTF-8."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _notebooks(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.rglob("*.ipynb")
                        if ".ipynb_checkpoints" not in p.parts and p.is_file()))


def _is_student(folder: Path) -> bool:
    return folder.is_dir() and not folder.name.startswith(".") and folder.name not in NOT_STUDENTS


def _one_student(folder: Path, lab_folders: set[str]) -> bool:
    """Notebooks directly inside, or only lab folders holding them (the release layout)."""
    if any(folder.glob("*.ipynb")):
        return True
    subfolders = {p.name for p in folder.iterdir() if _is_student(p)}
    return bool(subfolders) and subfolders <= lab_folders


def submitted_at(notebook: Path) -> str | None:
    """When nbgrader's exchange took this notebook: timestamp.txt beside it, as ISO 8601 (UTC
    where it names no zone, as nbgrader writes it), or None."""
    stamp = notebook.parent / "timestamp.txt"
    try:
        text = stamp.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return _iso(text.replace(" UTC", "+00:00"))


NBGRADER_FILES = ("timestamp.txt", "submission_secret.txt")  # what nbgrader's submit leaves beside the notebooks


def nbgrader_feedback(notebook: Path) -> Path | None:
    """Where `nbgrader release_feedback` takes this notebook's feedback page from, for a notebook
    that nbgrader's exchange collected (`<course root>/submitted/<student>/<assignment>/`, with
    NBGRADER_FILES, which release_feedback reads beside the page to match it to the submission):
    `<course root>/feedback/<student>/<assignment>/<notebook>.html`. None for any other notebook."""
    assignment = notebook.parent
    if assignment.parent.parent.name != "submitted" or not all(
            (assignment / name).is_file() and not (assignment / name).is_symlink() for name in NBGRADER_FILES):
        return None
    root = assignment.parent.parent.parent
    return root / "feedback" / assignment.parent.name / assignment.name / f"{notebook.stem}.html"


def gradescope_times(path: Path) -> tuple[str | None, str | None]:
    """(when it was submitted, when it is due) from Gradescope's submission_metadata.json: the
    student's own due date (an extension) where Gradescope has one, else the assignment's."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CourseError(f"{path}: not Gradescope's submission metadata ({e})") from None
    users = data.get("users") or [{}]
    due = (users[0].get("assignment") or {}).get("due_date") or (data.get("assignment") or {}).get("due_date")
    return _iso(data.get("created_at")), _iso(due)


def _iso(text: str | None) -> str | None:
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)).isoformat()


def _submission(student: str, folder: Path, reserved: set[str]) -> Submission:
    notebooks = _notebooks(folder)
    problem = None
    if student in reserved or student.startswith("."):
        problem = (f"not graded: a student folder cannot be named {student!r}, which the output folder needs for "
                   "its own files; rename the folder and grade it again")
    return Submission(student, notebooks, problem,
                      {str(nb): t for nb in notebooks if (t := submitted_at(nb)) is not None})


def discover(paths: list[Path], lab_folders: set[str] = frozenset(), student: str | None = None,
             reserved: set[str] = frozenset()) -> list[Submission]:
    """Every submission under `paths`, sorted by student id; a student seen twice is an error.
    With `student`, the one path given is that student's submission, whatever its layout (and
    without a notebook it is still a submission, which scores 0). A student whose id is in
    `reserved` (the output folder's own names) is returned with a problem, not graded."""
    if student is not None:
        if len(paths) != 1 or not paths[0].is_dir():
            raise CourseError("one submission folder is needed with --student")
        return [_submission(student, paths[0], reserved)]
    found: dict[str, Submission] = {}
    for path in paths:
        if not path.is_dir():
            raise CourseError(f"{path}: no such folder of submissions")
        if (path / "submitted").is_dir():
            path = path / "submitted"
        candidates = [path] if _one_student(path, set(lab_folders)) else sorted(p for p in path.iterdir()
                                                                              if _is_student(p))
        for folder in candidates:
            if not _notebooks(folder):
                continue
            name = student_id(folder.name)
            if name in found:
                raise CourseError(f"student {name!r} appears twice: {found[name].notebooks[0].parent} and {folder}")
            found[name] = _submission(name, folder, reserved)
    if not found:
        raise CourseError(f"no notebooks found under {', '.join(map(str, paths))}")
    return [found[k] for k in sorted(found)]
