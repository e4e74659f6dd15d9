"""From a student's notebooks to the code the worker will run, lab by lab.

Notebooks are matched to labs by the grade_ids they hold (by their file name only when the file is
not a readable notebook, to say which lab it cost). A unit's code is its solution cell, found by
grade_id; where the student's cell lost its metadata, the code cell defining the unit's name at
top level; where two cells hold the unit, the later one, as in the notebook the student ran.
The provided cells (the exercise's locked cells that are not tests) come from source/, never
from the student. Nothing here runs code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .course import Course, CourseError, nbgrader_meta, read_notebook, top_level_names

_MAGIC = re.compile(r"^(\s*)([%!])", re.M)


@dataclass
class LabCode:
    """What a worker runs for one lab of one submission."""
    setup: tuple[str, ...]
    units: dict[str, str] = field(default_factory=dict)
    notebook: str | None = None
    problem: str | None = None  # why no check of this lab can run, in a student's words


def _runnable(source: str) -> str:
    # Jupyter magics and shell escapes are not Python; the grader has no use for them.
    return _MAGIC.sub(r"\1# \2", source)


def units_in(nb, units: tuple[str, ...]) -> tuple[dict[str, str], int]:
    """The code of each unit found, and how many units some cell names by grade_id (for matching).

    A cell holds a unit when its grade_id is the unit's name or it defines that name at top
    level; the last such cell wins, as in the notebook the student ran top to bottom."""
    found: dict[str, str] = {}
    by_id = set()
    for cell in nb.cells:
        if cell.get("cell_type") != "code" or not isinstance(cell.get("source"), str):
            continue
        code = _runnable(cell.source)
        grade_id = nbgrader_meta(cell).get("grade_id")
        held = top_level_names(code) & set(units)
        if grade_id in units:
            held.add(grade_id)
            by_id.add(grade_id)
        for unit in held:
            found[unit] = code
    return found, len(by_id)


def extract(course: Course, notebooks: tuple[Path, ...]) -> dict[str, LabCode]:
    """lab name -> what to run for it; every lab of the course gets an entry."""
    labs = {lab.name: LabCode(setup=lab.setup) for lab in course.labs}
    best: dict[str, tuple[int, int]] = {}
    for path in notebooks:
        try:
            nb = read_notebook(path)
        except CourseError as e:
            lab = next((lab for lab in course.labs if lab.exercise.name == path.name), None)
            if lab is not None and labs[lab.name].notebook is None:
                labs[lab.name].notebook = path.name
                labs[lab.name].problem = f"{path.name} is not a valid notebook ({e})"
            continue
        scores = {}
        for lab in course.labs:
            units, by_id = units_in(nb, lab.units)
            if units:
                scores[lab.name] = (by_id, len(units), units)
        if not scores:
            continue
        name = max(scores, key=lambda n: scores[n][:2])
        by_id, count, units = scores[name]
        if (by_id, count) > best.get(name, (-1, -1)):
            best[name] = (by_id, count)
            labs[name].units, labs[name].notebook, labs[name].problem = units, path.name, None
    for lab in course.labs:
        if labs[lab.name].notebook is None:
            labs[lab.name].problem = f"no notebook for {lab.name} was submitted ({lab.exercise.name})"
    return labs
