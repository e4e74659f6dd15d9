"""Every notebook of the course runs: demos as they are, exercises with their solutions, and the
released exercises up to their stubs. Released notebooks run from a copy of their lab folder
alone, as nbgrader's exchange hands it out: each released lab folder holds everything it needs.
Also the ways `autograder validate` must fail."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from autograder.course import Course, nbgrader_meta
from autograder.execute import execute
from autograder.validate import check_released, check_source
from conftest import ROOT, copy_course, data_environment, in_background, shared_root

COURSE = Course(ROOT)
LABS = {lab.name: lab for lab in COURSE.labs}
DEMOS = [nb for lab in COURSE.labs for nb in lab.notebooks if nb.name.endswith("_demo.ipynb")]


def lone_copy(folder: Path, tmp_path: Path) -> Path:
    """The lab folder copied alone (links followed) where nothing lies beside or above it."""
    target = tmp_path / "student" / folder.name
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    return target


def _softmax_copy(course_copy: Course, tree: str, edit) -> Path:
    path = getattr(course_copy, tree) / "lab02_softmax" / "softmax_exercise.ipynb"
    nb = nbformat.read(path, 4)
    for cell in nb.cells:
        edit(cell)
    nbformat.write(nb, path)
    return path


def break_softmax(cell):
    if nbgrader_meta(cell).get("grade_id") == "softmax":
        cell.source = re.sub(r"^(\s*)### BEGIN SOLUTION", r"\1### BEGIN SOLUTION\n\1return x", cell.source, flags=re.M)


def break_import(cell):
    if nbgrader_meta(cell).get("grade_id") == "imports":
        cell.source += "\nimport no_such_module_here"


def hollow_tests(cell):
    meta = nbgrader_meta(cell)
    if meta.get("grade") and not meta.get("solution"):
        cell.source = "pass"


RAN: list = []


def start_early(config) -> None:
    """The notebooks, run in the background as soon as the tests are collected (tests/conftest.py)."""
    if not RAN:
        RAN.append(in_background(run_them))


def run_them() -> dict:
    """Every notebook run this module judges, run at once (a kernel each, three at a time: most of
    a run is a kernel starting and importing torch). name -> what `execute`, `check_source` or
    `check_released` said, as (path, outcome)."""
    root = Path(tempfile.mkdtemp(prefix="notebooks-", dir=shared_root()))
    env = {**os.environ, **data_environment()}  # each kernel's, whatever a test does to os.environ meanwhile
    jobs = {}
    for lab in COURSE.labs:
        folder = lone_copy(COURSE.release / lab.name, root / lab.name)
        demo = next(p.name for p in lab.notebooks if p.name.endswith("_demo.ipynb"))
        jobs[f"demo {lab.name}"] = (execute, folder / demo)
        jobs[f"source {lab.name}"] = (check_source, lab.exercise)
        jobs[f"released {lab.name}"] = (check_released, folder / lab.exercise.name)
    bare = lone_copy(COURSE.release / "lab02_softmax", root / "bare")
    (bare / "utils.py").unlink()
    jobs["released without utils"] = (check_released, bare / LABS["lab02_softmax"].exercise.name)
    for name, (tree, edit) in {"wrong solution": ("source", break_softmax), "crashing release": ("release", break_import),
                               "hollow tests": ("release", hollow_tests)}.items():
        jobs[name] = (check_source if tree == "source" else check_released,
                      _softmax_copy(copy_course(root / name.replace(" ", "_")), tree, edit))
    with ThreadPoolExecutor(3) as pool:
        futures = {name: (path, pool.submit(run, path, env=env)) for name, (run, path) in jobs.items()}
        return {name: (path, future.result()) for name, (path, future) in futures.items()}


@pytest.fixture(scope="module")
def ran(request) -> dict:
    start_early(request.config)
    return RAN[0].result()


@pytest.mark.parametrize("lab", LABS, ids=str)
def test_demo_runs_as_is_from_its_released_folder_alone(lab: str, ran, course):
    """The released demo is the source demo, outputs cleared; it runs as is from its lab folder alone."""
    path, outcomes = ran[f"demo {lab}"]
    source = next(p for p in LABS[lab].notebooks if p.name == path.name)
    code = [[c.source for c in nbformat.read(p, 4).cells if c.cell_type == "code"] for p in (source, path)]
    assert code[0] == code[1], f"{path} does not hold the code of {source}"
    assert [f"{o.name}: {o.message}" for o in outcomes if o.error] == []


@pytest.mark.parametrize("lab", LABS, ids=str)
def test_source_exercise_passes_every_test_cell(lab: str, ran):
    assert ran[f"source {lab}"][1] == []


@pytest.mark.parametrize("lab", LABS, ids=str)
def test_released_exercise_stops_at_its_stubs_from_its_folder_alone(lab: str, ran):
    assert ran[f"released {lab}"][1] == []


def test_a_released_lab_folder_without_its_utils_fails_at_the_imports(ran):
    problems = ran["released without utils"][1]
    assert any("(imports)" in p and "fails before the first exercise" in p and "ModuleNotFoundError" in p
               for p in problems), problems


def test_validate_names_the_failing_test_cell_of_a_wrong_solution(ran):
    path, problems = ran["wrong solution"]
    assert problems and all(p.startswith(f"{path}: cell ") for p in problems)
    assert any("(test_softmax_" in p and "AssertionError" in p for p in problems)


def test_validate_catches_a_release_that_crashes_instead_of_stopping(ran):
    assert any("fails before the first exercise" in p and "ModuleNotFoundError" in p for p in ran["crashing release"][1])


def test_validate_catches_a_test_that_passes_without_a_solution(ran):
    assert any("test passes without a solution" in p for p in ran["hollow tests"][1])


def test_running_a_notebook_prints_no_kernel_warnings(capfd, data_env):
    assert all(o.error is None for o in execute(COURSE.source / "lab02_softmax" / "softmax_demo.ipynb"))
    assert "Kernel is running over TCP" not in capfd.readouterr().err
