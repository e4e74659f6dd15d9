"""Finding the students in what the grader was given (SPEC §5's three layouts).

- one student's folder: `DIR/*.ipynb`, the folder's name is the student id;
- a folder of such folders: `DIR/<student>/*.ipynb`;
- nbgrader's exchange: `submitted/<student>/<assignment>/*.ipynb` (or the course folder above it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .course import CourseError

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")


@dataclass(frozen=True)
class Student:
    id: str
    notebooks: tuple[Path, ...]


def _notebooks(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.rglob("*.ipynb")
                        if ".ipynb_checkpoints" not in p.parts and p.is_file()))


def discover(paths: list[Path]) -> list[Student]:
    """Every student under `paths`, sorted by id; a student id seen twice is an error."""
    found: dict[str, Student] = {}
    for path in paths:
        if not path.is_dir():
            raise CourseError(f"{path}: no such folder of submissions")
        if (path / "submitted").is_dir():
            path = path / "submitted"
        if any(path.glob("*.ipynb")):
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
            found[folder.name] = Student(folder.name, notebooks)
    if not found:
        raise CourseError(f"no notebooks found under {', '.join(map(str, paths))}")
    return [found[k] for k in sorted(found)]
