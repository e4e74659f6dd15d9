"""nbgrader's exchange, end to end, with nbgrader's own command line: the instructor releases two
labs from release/, a student fetches them, solves one unit and submits both, the instructor
collects, and the autograder grades the collected `submitted/` tree; the feedback goes back through
nbgrader's release_feedback and fetch_feedback.

The exchange hands a student one folder per assignment, so each released lab folder must hold
everything its notebooks need: utils.py beside them, imported without any sys.path change.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.utils import get_username

from autograder.course import nbgrader_meta
from autograder.grade import Run, grade
from autograder.sandbox import choose_level
from conftest import reference_code, unit_cell

COURSE_ID = "lecture3"
LABS = {"lab01_linear_module": None, "lab02_softmax": "softmax"}  # lab -> the unit the student solves


def nbgrader(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args, f"--course={COURSE_ID}"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def write_config(folder: Path, **settings: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nbgrader_config.py").write_text(
        "c = get_config()\n" + "".join(f"c.{key} = {value!r}\n" for key, value in settings.items()))


def solved(source: str) -> str:
    """The reference solution cell as a student would leave it: without nbgrader's markers."""
    return re.sub(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", "", source, flags=re.M)


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.fixture
def exchange_cycle(tmp_path: Path, course, data_env):
    """Release, fetch, solve, submit and collect; returns (course folder, student folder, env)."""
    coursedir, exchange, student = tmp_path / "course", tmp_path / "exchange", tmp_path / "student"
    exchange.mkdir(mode=0o777)
    exchange.chmod(0o777)  # nbgrader wants its exchange root world-writable
    jupyter = tmp_path / "jupyter"  # no user or system Jupyter config leaks in
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(jupyter / "config"), "JUPYTER_DATA_DIR": str(jupyter / "data"),
           "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"), "JUPYTER_CONFIG_PATH": "", "JUPYTER_PATH": ""}
    env.pop("PYTHONPATH", None)
    # nbgrader's gradebook runs `alembic` from PATH: the one installed beside this Python.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    common = {"Exchange.root": str(exchange), "Exchange.cache": str(jupyter / "cache"),
              "CourseDirectory.course_id": COURSE_ID}
    write_config(coursedir, **common, **{"CourseDirectory.root": str(coursedir)})
    write_config(student, **common)

    for lab in LABS:
        released = coursedir / "release" / lab
        released.mkdir(parents=True)
        for item in (course.release / lab).iterdir():
            (released / item.name).write_bytes(item.read_bytes())
        nbgrader("release_assignment", lab, cwd=coursedir, env=env)

    for lab, unit in LABS.items():
        nbgrader("fetch_assignment", lab, cwd=student, env=env)
        if unit:
            path = student / lab / course.lab(lab).exercise.name
            nb = nbformat.read(path, 4)
            unit_cell(nb, unit).source = solved(reference_code(unit))
            nbformat.write(nb, path)
        nbgrader("submit", lab, cwd=student, env=env)

    for lab in LABS:
        nbgrader("collect", lab, cwd=coursedir, env=env)
    return coursedir, student, env


def test_the_exchange_hands_out_self_contained_labs_and_grades_what_it_collects(exchange_cycle, course, tmp_path):
    coursedir, student, env = exchange_cycle
    helpers = (course.source / "utils.py").read_bytes()

    # What the student fetched: each lab folder alone holds the helpers its notebooks import.
    for lab in LABS:
        fetched = student / lab
        assert (fetched / "utils.py").is_file(), f"{lab}: the fetched folder has no utils.py"
        assert (fetched / "utils.py").read_bytes() == helpers
        assert not (student / "utils.py").exists()
        imports = next(c for c in nbformat.read(fetched / course.lab(lab).exercise.name, 4).cells
                       if nbgrader_meta(c).get("grade_id") == "imports").source
        assert "utils" in imported_modules(imports), f"{lab}: the imports cell does not import utils"
        assert "sys" not in imported_modules(imports) and "sys.path" not in imports, \
            f"{lab}: the imports cell changes sys.path:\n{imports}"
        # The imports cell run from the fetched folder, as a kernel started there would, finds utils there.
        done = subprocess.run([sys.executable, "-c", imports + "\nprint(utils.__file__)"], cwd=fetched, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert Path(done.stdout.strip().splitlines()[-1]).resolve() == (fetched / "utils.py").resolve()

    # What the instructor collected: nbgrader's submitted/<student>/<assignment>/.
    user = get_username()  # nbgrader's student id: the current user's name
    assert sorted(p.name for p in (coursedir / "submitted").iterdir()) == [user]
    assert sorted(p.name for p in (coursedir / "submitted" / user).iterdir()) == sorted(LABS)

    out = tmp_path / "out"
    results = grade(course, [coursedir / "submitted"], out, Run(level=choose_level("auto"), jobs=1, device="cpu")).finals
    assert [r.student for r in results] == [user]
    result = results[0]
    assert sorted(result.labs) == sorted(LABS)
    expected = {u: 0.0 for lab in LABS for u in course.lab(lab).units}
    expected.update({unit: result.max_units[unit] for unit in LABS.values() if unit})
    assert result.units == expected, [(c["unit"], c["label"], c["message"]) for c in result.checks if not c["passed"]]
    assert result.max_units == {"Linear": 15, "softmax": 15}
    assert result.total == 15 and result.status == "ok", result.status
    assert (out / "grades.csv").read_text().splitlines()[1].startswith(f"{user},0,15,,,,,15,30,")

    # The feedback goes back the way the work came: nbgrader's release_feedback takes the page the
    # report pass left in the course's feedback/ folder, and only the student who submitted fetches it.
    for lab in LABS:
        nbgrader("release_feedback", lab, cwd=coursedir, env=env)
        nbgrader("fetch_feedback", lab, cwd=student, env=env)
    for lab in LABS:
        fetched = sorted((student / lab / "feedback").glob("*/*.html"))
        assert [p.name for p in fetched] == [course.lab(lab).exercise.stem + ".html"], fetched
        page = fetched[0].read_text()
        assert f"Feedback for {user}" in page and f"Total <b>{result.total:g} / {result.max_total:g}</b>" in page
        assert page == (out / user / "feedback.html").read_text()
