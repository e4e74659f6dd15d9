"""Finding students and their units without running anything."""
from __future__ import annotations

import nbformat
import pytest

from autograder.course import CourseError
from autograder.extract import extract
from autograder.submissions import discover
from conftest import unit_cell, write_student


def test_three_layouts_are_found(tmp_path):
    write_student(tmp_path / "one", "alice", ["lab02"])
    write_student(tmp_path / "class", "bob", ["lab02"])
    write_student(tmp_path / "class", "carol", ["lab02"])
    nbgrader = tmp_path / "course" / "submitted"
    write_student(nbgrader / "dave", "lab02_softmax", ["lab02"])
    assert [s.student for s in discover([tmp_path / "one" / "alice"])] == ["alice"]
    assert [s.student for s in discover([tmp_path / "class"])] == ["bob", "carol"]
    assert [s.student for s in discover([tmp_path / "course"])] == ["dave"]
    assert [s.student for s in discover([nbgrader])] == ["dave"]


def test_the_same_student_twice_is_an_error(tmp_path):
    write_student(tmp_path / "a", "eve", ["lab02"])
    write_student(tmp_path / "b", "eve", ["lab02"])
    with pytest.raises(CourseError, match="appears twice"):
        discover([tmp_path / "a", tmp_path / "b"])


def test_no_notebooks_is_an_error(tmp_path):
    with pytest.raises(CourseError, match="no notebooks"):
        discover([tmp_path])


def test_notebooks_are_matched_by_grade_ids_not_names(course, tmp_path):
    folder = write_student(tmp_path, "s", ["lab02", "lab05"])
    (folder / "softmax_exercise.ipynb").rename(folder / "my homework.ipynb")
    (folder / "minibatch_training_exercise.ipynb").rename(folder / "softmax_exercise.ipynb")
    labs = extract(course, tuple(sorted(folder.glob("*.ipynb"))))
    assert labs["lab02_softmax"].notebook == "my homework.ipynb"
    assert labs["lab05_minibatch_training"].notebook == "softmax_exercise.ipynb"
    assert set(labs["lab05_minibatch_training"].units) == {"template_update", "train_minibatch"}
    assert "no notebook" in labs["lab01_linear_module"].problem


def test_setup_comes_from_source_and_other_cells_never_run(course, tmp_path):
    def sabotage(lab, nb):
        nb.cells[0].source = "import os; os.system('rm -rf ~')"  # the student's own 'imports' cell
        nb.cells.insert(1, nbformat.v4.new_code_cell("raise SystemExit('student scratch cell')"))
    folder = write_student(tmp_path, "s", ["lab02"], edit=sabotage)
    lab = extract(course, tuple(folder.glob("*.ipynb")))["lab02_softmax"]
    assert "rm -rf" not in "".join(lab.setup) and "import torch" in "".join(lab.setup)
    assert lab.setup == course.lab("lab02_softmax").setup
    assert list(lab.units) == ["softmax"] and "student scratch" not in lab.units["softmax"]


def test_magics_in_a_unit_cell_do_not_break_it(course, tmp_path):
    def magic(lab, nb):
        unit_cell(nb, "softmax").source = "%matplotlib inline\n!pip list\n" + unit_cell(nb, "softmax").source
    folder = write_student(tmp_path, "s", ["lab02"], edit=magic)
    code = extract(course, tuple(folder.glob("*.ipynb")))["lab02_softmax"].units["softmax"]
    compile(code, "cell", "exec")


def test_the_release_layout_is_one_student(tmp_path, course):
    folder = tmp_path / "upload"
    for lab in ("lab01_linear_module", "lab02_softmax"):
        (folder / lab).mkdir(parents=True)
        write_student(tmp_path / "tmp", lab, [lab[:5]])
        for nb in (tmp_path / "tmp" / lab).glob("*.ipynb"):
            nb.rename(folder / lab / nb.name)
    found = discover([folder], {lab.name for lab in course.labs})
    assert [s.student for s in found] == ["upload"] and len(found[0].notebooks) == 2
    assert [s.student for s in discover([folder], student="alice")] == ["alice"]


def test_provided_cells_are_the_locked_cells_that_are_not_tests(course):
    setup = course.lab("lab04_train_vanilla_nn").setup
    assert any("class template_net" in c for c in setup) and any("def compute_accuracy" in c for c in setup)
    assert not any("assert" in c for c in setup)
