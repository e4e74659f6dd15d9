"""The students' kit (`autograder kit`): no hidden check and no solution in it, and `autograder
check` from an install of it runs the public checks.

The kit is installed as pip installs it (`pip install --target`, the wheel pip builds from the
zip, package data and console script included); its dependencies (torch...) are this venv's, on
the path after it. Its own `autograder` command runs, from a folder outside any course.
"""
from __future__ import annotations

import ast
import keyword
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.course import Course, CourseError
from autograder.kit import public_checks
from conftest import ROOT, reference_code, write_student

LAB, UNIT = "lab02_softmax", "softmax"


@pytest.fixture(scope="module")
def kit_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kit") / "kit.zip"
    done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(ROOT), "kit", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out


def kit_lines(kit_zip: Path) -> set[str]:
    """Every stripped line of every file in the kit, notebook cells line by line."""
    found = set()
    with zipfile.ZipFile(kit_zip) as z:
        for name in z.namelist():
            text = z.read(name).decode()
            found |= {line.strip() for line in text.splitlines()}
            if name.endswith(".ipynb"):
                for cell in nbformat.reads(text, 4).cells:
                    found |= {line.strip() for line in cell.source.splitlines()}
    return found - {""}


def _hidden(decorator: ast.expr) -> bool:
    node = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(node, ast.Attribute) and node.attr == "hidden"


def checks_of(path: Path) -> tuple[dict[str, list[str]], list[str], dict[str, float]]:
    """A checks module read independently of the kit: each hidden check's lines (decorators to
    end), the other lines, and the points of each public check."""
    text = path.read_text()
    lines = text.splitlines()
    hidden, public_points, taken = {}, {}, set()
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            if any(_hidden(d) for d in node.decorator_list):
                first = min(d.lineno for d in node.decorator_list)
                hidden[node.name] = lines[first - 1: node.end_lineno]
                taken.update(range(first - 1, node.end_lineno))
            else:
                points = [d for d in node.decorator_list if isinstance(d, ast.Call) and
                          getattr(d.func, "attr", "") == "points"]
                if points:  # a check, not a fixture named test_...
                    public_points[node.name] = float(points[0].args[0].value)
    return hidden, [line for i, line in enumerate(lines) if i not in taken], public_points


def test_the_kit_holds_no_hidden_checks_name_or_body(kit_zip):
    with zipfile.ZipFile(kit_zip) as z:
        texts = [z.read(name).decode() for name in z.namelist()]
    names, secret, elsewhere = [], set(), set()
    for path in sorted(Course(ROOT).checks.glob("*.py")):
        hidden, rest, _ = checks_of(path)
        names += hidden
        secret |= {line.strip() for body in hidden.values() for line in body}
        elsewhere |= {line.strip() for line in rest}
    secret -= elsewhere | {""}  # lines every check module shares (decorators, `for dim in (0, 1):`...)
    assert len(names) >= 10 and len(secret) >= 30, "the course has hidden checks to keep out"
    assert not [n for n in names if any(n in text for text in texts)]
    assert not secret & kit_lines(kit_zip), sorted(secret & kit_lines(kit_zip))[:5]


def test_the_kit_holds_no_solution_or_hidden_test_line_the_release_does_not(kit_zip):
    def marked(path: Path, begin: str, end: str) -> set[str]:
        found = set()
        for cell in nbformat.read(path, 4).cells:
            inside = False
            for line in (line.strip() for line in cell.source.splitlines()):
                inside = (inside or line.startswith(begin)) and not line.startswith(end)
                if inside and not line.startswith(begin) and line:
                    found.add(line)
        return found

    course = Course(ROOT)
    released = set()
    for path in course.release.rglob("*"):
        if path.is_file():
            released |= {line.strip() for line in path.read_text().splitlines()}
            if path.suffix == ".ipynb":
                released |= {line.strip() for c in nbformat.read(path, 4).cells for line in c.source.splitlines()}
    secret = set()
    for lab in course.labs:
        secret |= marked(lab.exercise, "### BEGIN SOLUTION", "### END SOLUTION")
        secret |= marked(lab.exercise, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
    secret -= released  # what every student already has gives nothing away
    # Not lines any Python holds (`else:`, `for _ in range(2):`): those say nothing of a solution.
    secret = {line for line in secret if len(line) > 25 and set(re.findall(r"[A-Za-z_]\w*", line)) - set(keyword.kwlist)}
    assert len(secret) >= 50, "the course has solutions to keep out"
    assert not secret & kit_lines(kit_zip), sorted(secret & kit_lines(kit_zip))[:5]


def test_public_checks_cuts_each_hidden_check_and_keeps_every_other_line():
    module = (
        "import pytest\nfrom pytest import mark\n\nLIMIT = 3\n\n\n"
        "@pytest.mark.points(1)\ndef test_a(submission):\n    assert LIMIT\n\n\n"
        "# why b checks what it checks\n@pytest.mark.points(2)\n@pytest.mark.hidden\n"
        "def test_b(submission):\n    assert LIMIT > 2\n\n\n"
        "@mark.hidden()\nclass TestC:\n    def test_c(self):\n        pass\n\n\n"
        "def helper():\n    return 1\n"
    )
    assert public_checks(module) == (
        "import pytest\nfrom pytest import mark\n\nLIMIT = 3\n\n\n"
        "@pytest.mark.points(1)\ndef test_a(submission):\n    assert LIMIT\n\n\n"
        "def helper():\n    return 1\n"
    )
    with pytest.raises(CourseError, match="line 2"):  # a mark not on a check could hide a whole module
        public_checks("import pytest\npytestmark = pytest.mark.hidden\ndef test_x():\n    pass\n", "m.py")


def test_check_from_an_install_of_the_kit_passes_a_solved_unit(kit_zip, tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--target", str(site), str(kit_zip)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "AUTOGRADER_COURSE"}
    env.update(PYTHONPATH=str(site), AUTOGRADER_DATA=str(tmp_path / "no-data"), AUTOGRADER_OFFLINE="1")
    where = subprocess.run([sys.executable, "-c", "import autograder.kit as k; print(k.__file__)"], env=env,
                           capture_output=True, text=True, cwd=tmp_path)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    folder = write_student(tmp_path, "me", [LAB[:5]], {UNIT: reference_code(UNIT)}, tree="release")
    done = subprocess.run([str(site / "bin" / "autograder"), "check", *folder.glob("*.ipynb"), "--device", "cpu"],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    hidden, _, public = checks_of(Course(ROOT).checks / f"{LAB}.py")
    verdicts = re.findall(rf"^\s+(PASS|FAIL)\s+{UNIT}: ", done.stdout, re.M)
    assert verdicts == ["PASS"] * len(public), done.stdout
    points = sum(public.values())
    assert f"score so far: {points:g} of {points:g} public points" in done.stdout, done.stdout
    assert "run when your work is graded" in done.stdout
    assert not [name for name in hidden if name in done.stdout + done.stderr]
