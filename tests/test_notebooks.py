"""Every notebook of the course runs: demos as they are, exercises with their solutions, and the
released exercises up to their stubs. Released notebooks run from a copy of their lab folder
alone, as nbgrader's exchange hands it out: each released lab folder holds everything it needs.
Also the ways `autograder validate` must fail."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder.course import Course, nbgrader_meta
from autograder.execute import execute
from autograder.validate import check_released, check_source
from conftest import ROOT

COURSE = Course(ROOT)
LABS = {lab.name: lab for lab in COURSE.labs}
DEMOS = [nb for lab in COURSE.labs for nb in lab.notebooks if nb.name.endswith("_demo.ipynb")]


def lone_copy(folder: Path, tmp_path: Path) -> Path:
    """The lab folder copied alone (links followed) where nothing lies beside or above it."""
    target = tmp_path / "student" / folder.name
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    return target


@pytest.mark.parametrize("path", DEMOS, ids=lambda p: p.parent.name)
def test_demo_runs_as_is_from_its_released_folder_alone(path: Path, data_env, course, tmp_path):
    """The released demo is the source demo, outputs cleared; it runs as is from its lab folder alone."""
    released = course.release / path.parent.name / path.name
    code = [[c.source for c in nbformat.read(p, 4).cells if c.cell_type == "code"] for p in (path, released)]
    assert code[0] == code[1], f"{released} does not hold the code of {path}"
    folder = lone_copy(released.parent, tmp_path)
    errors = [f"{o.name}: {o.message}" for o in execute(folder / path.name) if o.error]
    assert errors == []


@pytest.mark.parametrize("lab", LABS, ids=str)
def test_source_exercise_passes_every_test_cell(lab: str, data_env):
    assert check_source(LABS[lab].exercise) == []


@pytest.mark.parametrize("lab", LABS, ids=str)
def test_released_exercise_stops_at_its_stubs_from_its_folder_alone(lab: str, data_env, course, tmp_path):
    folder = lone_copy(course.release / lab, tmp_path)
    assert check_released(folder / LABS[lab].exercise.name) == []


def test_a_released_lab_folder_without_its_utils_fails_at_the_imports(data_env, course, tmp_path):
    folder = lone_copy(course.release / "lab02_softmax", tmp_path)
    (folder / "utils.py").unlink()
    problems = check_released(folder / LABS["lab02_softmax"].exercise.name)
    assert any("(imports)" in p and "fails before the first exercise" in p and "ModuleNotFoundError" in p
               for p in problems), problems


def _softmax_copy(course_copy: Course, tree: str, edit) -> Path:
    path = getattr(course_copy, tree) / "lab02_softmax" / "softmax_exercise.ipynb"
    nb = nbformat.read(path, 4)
    for cell in nb.cells:
        edit(cell)
    nbformat.write(nb, path)
    return path


def test_validate_names_the_failing_test_cell_of_a_wrong_solution(course_copy, data_env):
    def break_softmax(cell):
        if nbgrader_meta(cell).get("grade_id") == "softmax":
            cell.source = re.sub(r"^(\s*)### BEGIN SOLUTION", r"\1### BEGIN SOLUTION\n\1return x", cell.source, flags=re.M)
    path = _softmax_copy(course_copy, "source", break_softmax)
    problems = check_source(path)
    assert problems and all(p.startswith(f"{path}: cell ") for p in problems)
    assert any("(test_softmax_" in p and "AssertionError" in p for p in problems)


def test_validate_catches_a_release_that_crashes_instead_of_stopping(course_copy, data_env):
    def break_import(cell):
        if nbgrader_meta(cell).get("grade_id") == "imports":
            cell.source += "\nimport no_such_module_here"
    path = _softmax_copy(course_copy, "release", break_import)
    assert any("fails before the first exercise" in p and "ModuleNotFoundError" in p for p in check_released(path))


def test_validate_catches_a_test_that_passes_without_a_solution(course_copy, data_env):
    def hollow_tests(cell):
        meta = nbgrader_meta(cell)
        if meta.get("grade") and not meta.get("solution"):
            cell.source = "pass"
    path = _softmax_copy(course_copy, "release", hollow_tests)
    assert any("test passes without a solution" in p for p in check_released(path))


def test_running_a_notebook_prints_no_kernel_warnings(capfd, data_env):
    assert all(o.error is None for o in execute(COURSE.source / "lab02_softmax" / "softmax_demo.ipynb"))
    assert "Kernel is running over TCP" not in capfd.readouterr().err
