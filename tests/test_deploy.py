"""The Gradescope bundle as deployed: its own setup.sh builds the image in a fresh Debian root that
holds no development venv, and run_autograder grades there as root without CAP_SYS_ADMIN, from
/autograder and from / (tests/gradescope_image.py says what is emulated and how).

One image, of the quickest lab, built once per session, in the background from the moment these
tests are collected (see start_early); each run is a fresh container of it.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from autograder.bundle import bundle
from autograder.course import Course
from conftest import ROOT, code, write_student
from gradescope_image import Build, Image, missing_tools

LAB, UNIT, POINTS = "lab02_softmax", "softmax", 15
CACHE = Path.home() / ".cache" / "autograder-tests"  # the base image, kept between sessions
# What Gradescope writes beside each submission: when it was made and when it is due.
METADATA = json.dumps({"id": 1, "created_at": "2030-01-01T10:00:00.000000-07:00",
                       "assignment": {"due_date": "2030-01-02T23:59:00.000000-07:00", "title": LAB},
                       "users": [{"email": "student@example.edu", "name": "A Student"}]})
# Grading's imports and nothing the instructor's commands need.
INSTRUCTOR_ONLY = ("nbgrader", "nbconvert", "nbclient", "ipykernel", "torchvision", "jupyter_server")


_build: Build | None = None


def start_early(config: pytest.Config) -> Build | None:
    """Start building the image (minutes, mostly waiting on apt and pip): tests/conftest.py calls
    this as soon as this module's tests are collected, and runs them last, so that the image builds
    while the other tests run. None when the tools to build it are missing."""
    global _build
    if _build is None and not missing_tools():
        folder = Path(tempfile.mkdtemp(prefix="autograder-gradescope-"))
        _build = Build(folder, bundle(Course(ROOT), folder / "autograder.zip", LAB), CACHE)

        def clean_up() -> None:
            _build.cancel()
            # Over a gigabyte, and slow to delete: removed in the background.
            subprocess.Popen(["rm", "-rf", str(folder)], start_new_session=True)
        config.add_cleanup(clean_up)
    return _build


@pytest.fixture(scope="module")
def image(request) -> Image:
    building = start_early(request.config)
    if building is None:
        pytest.fail(f"building the image needs {', '.join(missing_tools())} (as root): apt-get install "
                    f"debootstrap libcap2-bin util-linux")
    try:
        return building.result()
    except subprocess.CalledProcessError as e:
        pytest.fail(f"{e.cmd} failed (exit {e.returncode}):\n{e.output}")


def notebook(tmp_path: Path, tree: str) -> bytes:
    folder = write_student(tmp_path, tree, [LAB[:5]], tree=tree)
    return next(folder.glob("*.ipynb")).read_bytes()


def test_setup_sh_installs_cpu_torch_and_only_what_grading_imports(image):
    site = next((image.root / "autograder/venv/lib").glob("python3*/site-packages"))
    installed = {p.name.split("-")[0].lower(): p.name for p in site.glob("*.dist-info")}
    assert "+cpu" in installed["torch"], installed["torch"]  # the CPU index's build, not PyPI's CUDA one
    assert not [name for name in installed if name.startswith("nvidia")], installed
    assert not set(INSTRUCTOR_ONLY) & set(installed), sorted(set(INSTRUCTOR_ONLY) & set(installed))
    assert image.venv_bytes() < 1.2 * 2**30, f"{image.venv_bytes() / 2**20:.0f} MiB"
    # The course (hidden checks, solutions) and the data are root's alone.
    for folder in ("autograder/source", "autograder/data"):
        assert (image.root / folder).stat().st_mode & 0o077 == 0, folder


def test_the_reference_scores_the_labs_points_from_autograder_without_landlock(image, tmp_path):
    # Release layout (the lab's folder with its utils.py); a kernel without Landlock, as Gradescope's may be.
    reference = {f"{LAB}/{LAB.split('_', 1)[1]}_exercise.ipynb": notebook(tmp_path, "source"),
                 f"{LAB}/utils.py": (Path(__file__).parent.parent / "source" / "utils.py").read_bytes()}
    run = image.run(reference, cwd="/autograder", metadata=METADATA,
                    env={"AUTOGRADER_SANDBOX": "uid", "AUTOGRADER_LANDLOCK": "0"})
    assert run.returncode == 0, run.log[-4000:]
    assert run.results["score"] == POINTS == sum(t["max_score"] for t in run.results["tests"]), run.log[-4000:]
    assert "sandbox: uid" in run.log  # the grader's log reaches Gradescope's output
    image.discard(run.upper)


def test_an_untouched_release_notebook_scores_0_from_the_filesystem_root(image, tmp_path):
    run = image.run({f"{UNIT}_exercise.ipynb": notebook(tmp_path, "release")}, cwd="/", metadata=METADATA,
                    env={"AUTOGRADER_SANDBOX": "uid"})
    assert run.returncode == 0, run.log[-4000:]
    assert run.results["score"] == 0 and len(run.results["tests"]) > 1, run.log[-4000:]
    assert all(t["max_score"] > 0 and t["name"].startswith(UNIT) for t in run.results["tests"])
    image.discard(run.upper)


def test_a_malformed_notebook_is_the_students_doing_with_a_message(image):
    run = image.run({f"{UNIT}_exercise.ipynb": b'{"cells": [ this is not JSON'}, metadata=METADATA,
                    env={"AUTOGRADER_SANDBOX": "uid"})
    assert run.returncode == 0, run.log[-4000:]
    assert run.results["score"] == 0 and run.results["tests"], run.log[-4000:]
    said = f"{UNIT}_exercise.ipynb is not a valid notebook"  # shown to the student, then nbformat's reason
    assert said in run.results["output"] and all(said in t["output"] for t in run.results["tests"]), run.results
    image.discard(run.upper)


def test_without_its_checks_the_image_fails_and_gives_the_student_no_score(image, tmp_path):
    checks = f"/autograder/source/autograder/checks/{LAB}.py"
    run = image.run({f"{UNIT}_exercise.ipynb": notebook(tmp_path, "source")}, before=f"rm {checks}",
                    metadata=METADATA, env={"AUTOGRADER_SANDBOX": "uid"})
    assert run.returncode != 0, run.log[-4000:]
    assert run.results is None, run.results  # Gradescope then shows the autograder failed, not a 0
    assert "the autograder itself failed" in run.log
    image.discard(run.upper)



# A student who writes Gradescope's results themselves, at once and again from a process left behind.
FORGER = code("""
    import os
    for _path in ("/autograder/results/results.json", "/autograder/results/forged.json"):
        try:
            with open(_path, "w") as _f:
                _f.write('{"score": 100}')
        except OSError:
            pass
    if os.fork() == 0:
        try:
            os.setsid()
        except OSError:
            pass
        import time
        time.sleep(3)
        try:
            open("/autograder/results/results.json", "w").write('{"score": 100}')
        except OSError:
            pass
        os._exit(0)
    """) + "def softmax(x, dim=-1):\n    return x\n"


def test_a_student_cannot_change_gradescopes_results(image, tmp_path):
    folder = write_student(tmp_path, "forger", [LAB[:5]], {UNIT: FORGER})
    run = image.run({f"{UNIT}_exercise.ipynb": next(folder.glob("*.ipynb")).read_bytes()}, metadata=METADATA,
                    env={"AUTOGRADER_SANDBOX": "uid"})
    assert run.returncode == 0, run.log[-4000:]
    assert run.results["score"] < POINTS and run.results["tests"], run.log[-4000:]
    assert not (run.upper / "autograder" / "results" / "forged.json").exists()
    image.discard(run.upper)
