"""source/ -> release/: nbgrader's own generate_assignment preprocessors, used as a library.

The pipeline is read from nbgrader's GenerateAssignment (so the release matches what
`nbgrader generate_assignment` makes) less its database step. Output is byte-for-byte
reproducible: notebooks keep their cell ids and nbformat writes sorted, indented JSON.
"""
from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path

import nbformat
from nbgrader.converters.generate_assignment import GenerateAssignment
from nbgrader.nbgraderformat import MetadataValidator
from nbgrader.preprocessors import CheckCellMetadata, NbGraderPreprocessor, SaveCells

from .course import HELPERS, Course, CourseError, load_notebook, nbgrader_meta

PIPELINE: tuple[type[NbGraderPreprocessor], ...] = tuple(
    p for p in GenerateAssignment.class_traits()["preprocessors"].default() if p is not SaveCells
)
_SKIP = {"__pycache__", ".ipynb_checkpoints"}


class ReleaseError(CourseError):
    """A source notebook cannot be released; the message names the notebook and the cell."""


def _cell_name(nb, index: int) -> str:
    grade_id = nbgrader_meta(nb.cells[index]).get("grade_id")
    return f"cell {index}" + (f" ({grade_id})" if grade_id else "")


def _locate(nb, step: NbGraderPreprocessor, resources: dict) -> int | None:
    """Which cell makes `step` fail: nbgrader's errors do not say."""
    if isinstance(step, CheckCellMetadata):
        validator, seen = MetadataValidator(), set()
        for index, cell in enumerate(nb.cells):
            try:
                validator.validate_cell(cell)
            except Exception:
                return index
            grade_id = nbgrader_meta(cell).get("grade_id")
            if grade_id:
                if grade_id in seen:
                    return index
                seen.add(grade_id)
        return None
    for index, cell in enumerate(nb.cells):
        try:
            step.preprocess_cell(copy.deepcopy(cell), copy.deepcopy(resources), index)
        except Exception:
            return index
    return None


def _metadata_problem(nb) -> str | None:
    # CheckCellMetadata only logs the reason and raises a generic message; ask the validator itself.
    try:
        MetadataValidator().validate_nb(nb)
    except Exception as e:
        return str(e)
    return None


def release_notebook(source: Path) -> nbformat.NotebookNode:
    """One notebook through the pipeline; a ReleaseError names the notebook and cell on failure."""
    nb = load_notebook(source)
    resources = {"metadata": {"path": str(source.parent), "name": source.stem},
                 "nbgrader": {"notebook": source.stem, "assignment": source.parent.name}}
    for step_class in PIPELINE:
        step = step_class()
        before = copy.deepcopy(nb)
        try:
            nb, resources = step.preprocess(nb, resources)
        except Exception as e:
            reason = (_metadata_problem(before) if isinstance(step, CheckCellMetadata) else None) or str(e)
            index = _locate(before, step, resources)
            where = _cell_name(before, index) if index is not None else "notebook"
            raise ReleaseError(f"{source}: {where}: {reason} ({step_class.__name__})") from None
    return nb


def build_release(course: Course, out: Path) -> list[Path]:
    """Write the released course into `out` (which must not exist); returns the files written.
    Each lab folder is self-contained: it gets its own copy of the course helpers, so that
    nbgrader's exchange, which hands out one folder, hands out everything a lab needs."""
    written = []
    for lab in course.labs:
        for item in sorted(lab.folder.iterdir()):
            if item.name in _SKIP or item.is_dir() or item.name == HELPERS:
                continue
            target = out / lab.name / item.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if item.suffix == ".ipynb":
                nbformat.write(release_notebook(item), target)
            else:
                shutil.copyfile(item, target)
            written.append(target)
        shutil.copyfile(course.source / HELPERS, out / lab.name / HELPERS)
        written.append(out / lab.name / HELPERS)
    return written


def release(course: Course) -> list[Path]:
    """Regenerate release/ from source/. Nothing is replaced unless every notebook released."""
    course.release.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=course.root, prefix=".release-") as tmp:
        staged = Path(tmp) / "release"
        files = build_release(course, staged)
        old = Path(tmp) / "old"
        if course.release.exists():
            course.release.rename(old)
        staged.rename(course.release)
    return [course.release / f.relative_to(staged) for f in files]


def stale(course: Course) -> list[str]:
    """What in release/ differs from a fresh release of source/ (empty when in sync)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "release"
        build_release(course, fresh)
        want = {p.relative_to(fresh): p.read_bytes() for p in fresh.rglob("*") if p.is_file()}
    have = {p.relative_to(course.release): p for p in course.release.rglob("*")
            if p.is_file() and not _SKIP.intersection(p.parts)} if course.release.is_dir() else {}
    problems = [f"release/{rel}: missing" for rel in sorted(want.keys() - have.keys())]
    problems += [f"release/{rel}: not made from source/" for rel in sorted(have.keys() - want.keys())]
    problems += [f"release/{rel}: differs from source/" for rel in sorted(want.keys() & have.keys())
                 if have[rel].read_bytes() != want[rel]]
    return problems
