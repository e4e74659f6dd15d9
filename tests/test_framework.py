"""The grader is a framework: a lab is its source notebooks plus one check module, nothing else.

In a scratch copy of the course, an instructor adds a tiny lab (one unit, one check), releases
and grades it, with no change to the grader.
"""
from __future__ import annotations

import shutil
import textwrap

import nbformat
import pytest

from autograder.course import Course
from autograder.grade import grade
from autograder.release import release
from autograder.sandbox import Limits
from conftest import ROOT


def _meta(**kw):
    return {"nbgrader": {"grade": False, "solution": False, "locked": False, "schema_version": 3, **kw}}


TINY_CHECKS = textwrap.dedent('''
    """Lab 06 - doubling, the tiniest lab."""
    import pytest
    import torch

    from autograder.judge import close
    from autograder.probes import probe


    @probe
    def call(ctx, x):
        return ctx.unit("double")(x)


    @pytest.mark.points(10)
    def test_double_values(submission):
        """double(x) is 2 x"""
        x = torch.tensor([1.0, -2.0, 3.5])
        close(submission.run(call, x=x), 2 * x, "double([1, -2, 3.5])")
    ''')


def tiny_notebook(solution: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [
        nbformat.v4.new_code_cell("import torch", id="imports", metadata=_meta(locked=True, grade_id="imports")),
        nbformat.v4.new_code_cell(f"def double(x):\n    ### BEGIN SOLUTION\n    {solution}\n    ### END SOLUTION",
                                  id="double", metadata=_meta(solution=True, grade_id="double")),
        nbformat.v4.new_code_cell("assert double(torch.ones(1)).item() == 2", id="test",
                                  metadata=_meta(grade=True, locked=True, points=10, grade_id="test_double_values")),
    ]
    return nb


@pytest.fixture
def extended_course(tmp_path) -> Course:
    for part in ("source", "release"):
        shutil.copytree(ROOT / part, tmp_path / part)
    shutil.copytree(ROOT / "autograder" / "checks", tmp_path / "autograder" / "checks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    lab = tmp_path / "source" / "lab06_tiny"
    lab.mkdir()
    nbformat.write(tiny_notebook("return 2 * x"), lab / "tiny_exercise.ipynb")
    (tmp_path / "autograder" / "checks" / "lab06_tiny.py").write_text(TINY_CHECKS)
    return Course(tmp_path)


def test_a_new_lab_is_released_and_graded_with_no_change_to_the_grader(extended_course, data_env, tmp_path):
    course = extended_course
    assert course.units[-1] == "double"
    release(course)
    released = nbformat.read(course.release / "lab06_tiny" / "tiny_exercise.ipynb", 4)
    assert "raise NotImplementedError" in released.cells[1].source
    for student, body in (("right", "return 2 * x"), ("wrong", "return x")):
        (tmp_path / "class" / student).mkdir(parents=True)
        nbformat.write(tiny_notebook(body), tmp_path / "class" / student / "tiny_exercise.ipynb")
    results = {r.student: r for r in grade(course, [tmp_path / "class"], tmp_path / "out", device="cpu",
                                           limits=Limits(check_seconds=30, lab_seconds=60))}
    assert results["right"].units["double"] == 10 and results["wrong"].units["double"] == 0
    header = (tmp_path / "out" / "grades.csv").read_text().splitlines()[0]
    assert header.endswith(",train_minibatch,double,total,max_total,status")
