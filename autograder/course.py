"""What the course is, read from its folders: labs, their notebooks, and the graded units.

Nothing about a particular lab is written here: a lab is a `source/<lab>/` folder, its exercise
is the notebook whose name ends in `_exercise.ipynb`, and a graded unit is a solution cell whose
grade_id is the name it defines at top level (SPEC §2: one cell per unit).
"""
from __future__ import annotations

import ast
import importlib.util
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType

import nbformat

HELPERS = "utils.py"
EXERCISE_SUFFIX = "_exercise.ipynb"


class CourseError(RuntimeError):
    """The course folders are not what the tool needs; the message says what and where."""


def read_notebook(path: Path) -> nbformat.NotebookNode:
    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise CourseError(f"{path}: no such notebook") from None
    except Exception as e:  # nbformat raises json, unicode and validation errors alike
        raise CourseError(f"{path}: not a readable notebook ({type(e).__name__}: {e})") from None


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def top_level_names(source: str) -> set[str]:
    """Names a cell defines at top level (def, class, assignment); empty if it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def unit_cells(nb) -> dict[str, int]:
    """grade_id -> cell index of the solution cells that define a name equal to their grade_id."""
    units = {}
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("solution") and meta.get("grade_id") in top_level_names(cell.source):
            units[meta["grade_id"]] = index
    return units


@dataclass(frozen=True)
class Lab:
    name: str
    folder: Path
    exercise: Path
    units: tuple[str, ...]

    @property
    def notebooks(self) -> list[Path]:
        return sorted(self.folder.glob("*.ipynb"))


@dataclass(frozen=True)
class Course:
    root: Path

    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def release(self) -> Path:
        return self.root / "release"

    @property
    def checks(self) -> Path:
        """One pytest module per lab, named like the lab's folder."""
        return self.root / "autograder" / "checks"

    @cached_property
    def labs(self) -> tuple[Lab, ...]:
        if not self.source.is_dir():
            raise CourseError(f"{self.source}: no source/ folder; pass --course DIR (the folder holding source/)")
        labs, owner = [], {}
        for folder in sorted(p for p in self.source.iterdir() if p.is_dir() and any(p.glob("*.ipynb"))):
            exercises = sorted(folder.glob(f"*{EXERCISE_SUFFIX}"))
            if len(exercises) != 1:
                raise CourseError(f"{folder}: expected one *{EXERCISE_SUFFIX}, found {len(exercises)}")
            units = tuple(unit_cells(read_notebook(exercises[0])))
            for unit in units:
                if unit in owner:
                    raise CourseError(f"unit {unit!r} is defined in both {owner[unit]} and {exercises[0]}")
                owner[unit] = exercises[0]
            labs.append(Lab(folder.name, folder, exercises[0], units))
        if not labs:
            raise CourseError(f"{self.source}: no lab folders with notebooks")
        return tuple(labs)

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(unit for lab in self.labs for unit in lab.units)

    def helpers(self) -> ModuleType:
        """The course's utils.py, imported once under the name the notebooks use."""
        path = self.source / HELPERS
        loaded = sys.modules.get("utils")
        if loaded is not None and Path(getattr(loaded, "__file__", "")) == path:
            return loaded
        if not path.is_file():
            raise CourseError(f"{path}: the course helper module is missing")
        spec = importlib.util.spec_from_file_location("utils", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["utils"] = module
        return module


def find_course(start: Path | None = None) -> Course:
    """The course given by $AUTOGRADER_COURSE, else the first of cwd and its parents holding
    source/, else the checkout this package was installed from."""
    if os.environ.get("AUTOGRADER_COURSE"):
        return Course(Path(os.environ["AUTOGRADER_COURSE"]).resolve())
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "source" / HELPERS).is_file():
            return Course(folder)
    return Course(Path(__file__).resolve().parent.parent)
