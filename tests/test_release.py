"""`autograder release`: source/ -> release/ through nbgrader's preprocessors; each released lab
folder is self-contained (its notebooks and its own copy of utils.py), as nbgrader's exchange hands
out one folder per assignment."""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.cli import main
from autograder.course import HELPERS, nbgrader_meta, unit_cells
from autograder.release import ReleaseError, release, stale

SPEC_UNITS = ["Linear", "softmax", "one_layer_net", "train_online", "template_update", "train_minibatch"]


def notebooks(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.ipynb"))


def tree_bytes(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_release_is_in_sync_with_source(course):
    assert stale(course) == []


def test_editing_a_source_notebook_without_releasing_is_caught(course_copy):
    path = course_copy.source / "lab02_softmax" / "softmax_exercise.ipynb"
    nb = nbformat.read(path, 4)
    nb.cells[0].source += "\n# a new line"
    nbformat.write(nb, path)
    assert stale(course_copy) == ["release/lab02_softmax/softmax_exercise.ipynb: differs from source/"]


def test_release_is_byte_for_byte_reproducible(course, course_copy):
    release(course_copy)
    first = tree_bytes(course_copy.release)
    release(course_copy)
    assert tree_bytes(course_copy.release) == first == tree_bytes(course.release)


def test_release_removes_files_not_made_from_source(course_copy):
    (course_copy.release / "lab01_linear_module" / "leftover.ipynb").write_text("{}")
    assert "release/lab01_linear_module/leftover.ipynb: not made from source/" in stale(course_copy)
    release(course_copy)
    assert stale(course_copy) == []


def test_no_solution_hidden_test_or_output_survives(course):
    for src in notebooks(course.source):
        rel = nbformat.read(course.release / src.relative_to(course.source), 4)
        text = nbformat.writes(rel)
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text, f"{src.name}: {marker} left in release"
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in rel.cells if c.cell_type == "code"), f"{src.name}: outputs left in release"
        released = {c.id: c.source for c in rel.cells}
        for cell in nbformat.read(src, 4).cells:
            for kind, region in re.findall(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", cell.source, re.S):
                assert region.strip() not in released[cell.id], f"{src.name}: {cell.id} keeps its {kind.lower()}"


def test_each_unit_is_one_solution_cell_in_source_and_release(course):
    for folder in (course.source, course.release):
        found = [u for p in notebooks(folder) for u in unit_cells(nbformat.read(p, 4))]
        grade_ids = [nbgrader_meta(c).get("grade_id") for p in notebooks(folder)
                     for c in nbformat.read(p, 4).cells if nbgrader_meta(c).get("solution")]
        assert sorted(found) == sorted(SPEC_UNITS), folder
        assert all(grade_ids.count(u) == 1 for u in SPEC_UNITS), folder
    assert course.units == tuple(SPEC_UNITS)


def test_released_cells_are_locked_and_checksummed(course):
    for path in notebooks(course.release):
        for cell in nbformat.read(path, 4).cells:
            meta = nbgrader_meta(cell)
            if meta.get("grade") or meta.get("locked"):
                assert meta.get("checksum"), f"{path.name}: {meta.get('grade_id')} has no checksum"
            if meta.get("grade") and not meta.get("solution"):
                assert cell.metadata.get("deletable") is False and cell.metadata.get("editable") is False


def test_nbgrader_generate_assignment_makes_the_same_folders(course, tmp_path):
    """nbgrader, given the source lab folders as they are (utils.py a link to the course's), releases
    the same files: the same cells, and the helpers copied into every lab folder."""
    (tmp_path / "source").mkdir()
    shutil.copyfile(course.source / HELPERS, tmp_path / "source" / HELPERS)
    for lab in course.labs:
        shutil.copytree(lab.folder, tmp_path / "source" / lab.name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", lab.name, "--no-db", "--force",
                        f"--CourseDirectory.root={tmp_path}"], check=True, capture_output=True, cwd=tmp_path)
    assert not (tmp_path / "release" / HELPERS).exists()
    for lab in course.labs:
        theirs_folder, ours_folder = tmp_path / "release" / lab.name, course.release / lab.name
        assert sorted(p.name for p in theirs_folder.iterdir()) == sorted(p.name for p in ours_folder.iterdir())
        for path in ours_folder.iterdir():
            if path.suffix == ".ipynb":
                theirs, ours = nbformat.read(theirs_folder / path.name, 4), nbformat.read(path, 4)
                assert ours.cells == theirs.cells, f"{lab.name}/{path.name} differs from nbgrader's release"
            else:
                assert path.read_bytes() == (theirs_folder / path.name).read_bytes(), f"{lab.name}/{path.name}"


def test_each_released_lab_folder_holds_its_notebooks_and_its_own_utils(course):
    helpers = (course.source / HELPERS).read_bytes()
    assert not (course.release / HELPERS).exists(), "release/utils.py: the helpers belong in each lab folder"
    assert sorted(p.name for p in course.release.iterdir()) == sorted(lab.name for lab in course.labs)
    for lab in course.labs:
        folder = course.release / lab.name
        assert sorted(p.name for p in folder.iterdir()) == sorted([*(nb.name for nb in lab.notebooks), HELPERS])
        assert not (folder / HELPERS).is_symlink() and (folder / HELPERS).read_bytes() == helpers, \
            f"release/{lab.name}/{HELPERS} must be a real copy of source/{HELPERS}"


def _imported(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_notebooks_import_utils_from_their_own_folder(course):
    """No notebook reaches outside its lab folder: utils is imported from beside it, sys.path untouched."""
    for folder in (course.source, course.release):
        for path in notebooks(folder):
            code = [c.source for c in nbformat.read(path, 4).cells if c.cell_type == "code"]
            assert any("utils" in _imported(source) for source in code), f"{path}: does not import utils"
            for source in code:
                assert "sys.path" not in source and "sys" not in _imported(source) and '".."' not in source, \
                    f"{path}: a cell reaches outside the lab folder:\n{source}"


def test_stale_names_each_lab_copy_of_the_helpers(course_copy):
    (course_copy.release / "lab03_vanilla_nn" / HELPERS).unlink()
    (course_copy.release / HELPERS).write_bytes((course_copy.source / HELPERS).read_bytes())
    assert stale(course_copy) == [f"release/lab03_vanilla_nn/{HELPERS}: missing",
                                  f"release/{HELPERS}: not made from source/"]
    release(course_copy)
    assert stale(course_copy) == []
    with open(course_copy.source / HELPERS, "a") as f:
        f.write("\n# a new line\n")
    assert stale(course_copy) == [f"release/{lab.name}/{HELPERS}: differs from source/" for lab in course_copy.labs]


def _edit_cell(course, grade_id: str, edit) -> Path:
    path = course.source / "lab02_softmax" / "softmax_exercise.ipynb"
    nb = nbformat.read(path, 4)
    cell = next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id)
    edit(cell, nb)
    nbformat.write(nb, path)
    return path


def test_missing_end_solution_marker_names_notebook_and_cell(course_copy):
    path = _edit_cell(course_copy, "softmax", lambda c, nb: setattr(c, "source", c.source.replace("### END SOLUTION", "")))
    before = tree_bytes(course_copy.release)
    with pytest.raises(ReleaseError) as e:
        release(course_copy)
    assert str(path) in str(e.value) and "(softmax)" in str(e.value) and "end solution" in str(e.value).lower()
    assert tree_bytes(course_copy.release) == before, "a failed release must leave release/ as it was"


def test_duplicate_grade_id_names_notebook_and_cell(course_copy):
    def duplicate(cell, nb):
        nb.cells.append(nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": dict(nbgrader_meta(cell))}))
    path = _edit_cell(course_copy, "softmax", duplicate)
    with pytest.raises(ReleaseError, match=re.escape(str(path)) + r": cell \d+ \(softmax\): Duplicate grade id"):
        release(course_copy)


def test_cli_release_reports_a_broken_marker_in_one_line(course_copy, capsys):
    _edit_cell(course_copy, "softmax", lambda c, nb: setattr(c, "source", c.source.replace("### END SOLUTION", "")))
    assert main(["--course", str(course_copy.root), "release"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("autograder release: ") and "softmax_exercise" in err


def test_cli_release_without_a_course_says_where_it_looked(tmp_path, capsys):
    assert main(["--course", str(tmp_path), "release"]) == 2
    assert "no source/ folder" in capsys.readouterr().err
