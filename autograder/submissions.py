"""Finding the submissions in what the grader was given. A submission is one student's notebooks.

- one student's folder: `DIR/*.ipynb`, or the release layout `DIR/<lab folder>/*.ipynb` (what a
  student downloads and uploads again, e.g. to Gradescope); the folder's name is the student id;
- a folder of such folders: `DIR/<student>/...`;
- nbgrader's exchange: `submitted/<student>/<assignment>/*.ipynb` (or the course folder above it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .course import CourseError

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")


@dataclass(frozen=True)
class Submission:
    student: str
    notebooks: tuple[Path, ...]


def _notebooks(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.rglob("*.ipynb")
                        if ".ipynb_checkpoints" not in p.parts and p.is_file()))


def _one_student(folder: Path, lab_folders: set[str]) -> bool:
    """Notebooks directly inside, or only lab folders holding them (the release layout)."""
    if any(folder.glob("*.ipynb")):
        return True
    subfolders = {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return bool(subfolders) and subfolders <= lab_folders


def discover(paths: list[Path], lab_folders: set[str] = frozenset(), student: str | None = None
             ) -> list[Submission]:
    """Every submission under `paths`, sorted by student id; a student seen twice is an error.
    With `student`, the one path given is that student's submission, whatever its layout."""
    if student is not None:
        if len(paths) != 1 or not paths[0].is_dir():
            raise CourseError("one submission folder is needed with --student")
        if not _SAFE_ID.match(student):
            raise CourseError(f"{student!r} cannot be a student id (letters, digits, . _ @ + -)")
        notebooks = _notebooks(paths[0])
        if not notebooks:
            raise CourseError(f"no notebooks found under {paths[0]}")
        return [Submission(student, notebooks)]
    found: dict[str, Submission] = {}
    for path in paths:
        if not path.is_dir():
            raise CourseError(f"{path}: no such folder of submissions")
        if (path / "submitted").is_dir():
            path = path / "submitted"
        if _one_student(path, set(lab_folders)):
            candidates = [path]
        else:
            candidates = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        for folder in candidates:
            notebooks = _notebooks(folder)
            if not notebooks:
                continue
            if not _SAFE_ID.match(folder.name):
                raise CourseError(f"{folder}: {folder.name!r} cannot be a student id (letters, digits, . _ @ + -)")
            if folder.name in found:
                raise CourseError(f"student {folder.name!r} appears twice: {found[folder.name].notebooks[0].parent} "
                                  f"and {folder}")
            found[folder.name] = Submission(folder.name, notebooks)
    if not found:
        raise CourseError(f"no notebooks found under {', '.join(map(str, paths))}")
    return [found[k] for k in sorted(found)]
