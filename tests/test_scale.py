"""Grading as courses run it: lab by lab, resuming after kill -9, shards merged, Gradescope
bundles per lab, a student's self-check, and a command line that refuses nonsense.

Students here hold only the softmax lab (slowed a little, so that a run can be interrupted in the
middle) unless a test needs more.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from autograder.bundle import bundle
from autograder.grade import GRADEBOOK, Run, grade, merge
from autograder.gradebook import Gradebook
from autograder.sandbox import Limits, choose_level
from conftest import ROOT, code, reference_code, write_student

SLOW_SOFTMAX = ("import time\ndef softmax(x, dim=-1):\n    time.sleep(0.2)\n"
                "    e = torch.exp(x - x.amax(dim=dim, keepdim=True))\n    return e / e.sum(dim=dim, keepdim=True)\n")


@pytest.fixture(scope="module")
def run() -> Run:
    return Run(choose_level("auto"), device="cpu")


def make_class(root: Path, n: int) -> Path:
    for i in range(n):
        write_student(root, f"s{i:02d}", ["lab02"], {"softmax": SLOW_SOFTMAX if i % 3 else "def softmax(x, dim=-1):\n    return x\n"})
    return root


def rows(out: Path) -> list[dict]:
    with open(out / "grades.csv") as f:
        return list(csv.DictReader(f))


def graded_at(out: Path) -> dict[tuple[str, str], float]:
    book = Gradebook(out / GRADEBOOK)
    try:
        return {(s, lab): t for s, lab, t in book.db.execute("SELECT student, lab, graded_at FROM labs")}
    finally:
        book.close()


def assert_consistent(out: Path, students: list[str]) -> None:
    table = rows(out)
    assert [r["student"] for r in table] == students, "every student exactly once, in order"
    for r in table:
        data = json.loads((out / r["student"] / "results.json").read_text())
        assert data["score"] == float(r["total"]) == sum(t["score"] for t in data["tests"])
        assert (out / r["student"] / "feedback.html").is_file()


def test_kill_9_in_the_middle_then_the_same_command_finishes_the_job(tmp_path, data_env):
    class_dir = make_class(tmp_path / "class", 8)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "autograder", "--course", str(ROOT), "grade", str(class_dir), "--out", str(out),
               "--quiet", "--device", "cpu"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if len(graded_at(out) if (out / GRADEBOOK).is_file() else {}) >= 3:
            break
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = graded_at(out)
    assert 3 <= len(before) < 8, f"the kill came too late or too early: {sorted(before)}"
    assert subprocess.run(command, capture_output=True).returncode == 0
    after = graded_at(out)
    assert all(after[k] == before[k] for k in before), "a lab graded before the kill was graded again"
    assert_consistent(out, [f"s{i:02d}" for i in range(8)])
    assert not any("autograder" in _cmdline(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid())


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore")
    except OSError:
        return ""


def test_rerun_grades_only_what_changed_and_regrade_forces(tmp_path, data_env, course, run):
    class_dir = make_class(tmp_path / "class", 3)
    out = tmp_path / "out"
    grade(course, [class_dir], out, run)
    first = graded_at(out)
    (class_dir / "s01" / "softmax_exercise.ipynb").write_text(
        (class_dir / "s00" / "softmax_exercise.ipynb").read_text())  # s01 now submits s00's notebook
    results = {r.student: r for r in grade(course, [class_dir], out, run).finals}
    second = graded_at(out)
    lab = "lab02_softmax"
    assert second[("s00", lab)] == first[("s00", lab)] and second[("s01", lab)] > first[("s01", lab)]
    assert results["s01"].total == results["s00"].total
    grade(course, [class_dir], out, run, regrade=True)
    assert all(graded_at(out)[key] > second[key] for key in second)


def test_a_class_is_graded_lab_by_lab_as_the_weeks_go(tmp_path, data_env, course, run):
    class_dir = tmp_path / "class"
    write_student(class_dir, "ann")  # every lab, the reference solutions
    write_student(class_dir, "bob", ["lab01", "lab05"], {"Linear": "class Linear(nn.Module):\n    pass\n"})
    week1 = grade(course, [class_dir], tmp_path / "week1", Run(run.level, device="cpu", labs=("lab01_linear_module",))).finals
    table = {r["student"]: r for r in rows(tmp_path / "week1")}
    assert table["ann"]["Linear"] == "15" and table["ann"]["max_total"] == "15" and table["ann"]["softmax"] == ""
    assert table["bob"]["Linear"] == "0" and table["bob"]["total"] == "0" and table["bob"]["status"] == "ok"
    summary = (tmp_path / "week1" / "summary.html").read_text()
    assert "lab01_linear_module" in summary and "lab05_minibatch_training" not in summary and "softmax" not in summary
    assert {r.student for r in week1} == {"ann", "bob"}
    grade(course, [class_dir], tmp_path / "week5", Run(run.level, device="cpu", labs=("lab05_minibatch_training",)))
    table = {r["student"]: r for r in rows(tmp_path / "week5")}
    assert table["bob"]["train_minibatch"] == "25" and table["bob"]["Linear"] == "" and table["bob"]["max_total"] == "40"
    results = json.loads((tmp_path / "week5" / "bob" / "results.json").read_text())
    assert results["score"] == 40 and {t["name"].split(":")[0] for t in results["tests"]} == {"template_update", "train_minibatch"}


def test_four_cpu_hogs_cost_the_reference_nothing_and_a_sleeper_only_its_lab(tmp_path, data_env, course, run):
    # Limits are CPU seconds, so a machine three times busier than its cores slows the reference's
    # training but costs it nothing; the wall-clock backstop still stops a sleeper.
    class_dir = tmp_path / "class"
    write_student(class_dir, "ref", ["lab02", "lab03", "lab04", "lab05"])
    write_student(class_dir, "sleeper", ["lab02", "lab03"], {"softmax": "import time\ntime.sleep(3600)\n"})
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        grade(course, [class_dir], tmp_path / "out", Run(run.level, Limits(min_wall_seconds=20), device="cpu", jobs=2))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    table = {r["student"]: r for r in rows(tmp_path / "out")}
    failed = [t for t in json.loads((tmp_path / "out" / "ref" / "results.json").read_text())["tests"]
              if t["status"] != "passed"]
    assert table["ref"]["total"] == table["ref"]["max_total"] == "85" and table["ref"]["status"] == "ok", failed
    assert table["sleeper"]["softmax"] == "0" and table["sleeper"]["one_layer_net"] == "15"
    results = json.loads((tmp_path / "out" / "sleeper" / "results.json").read_text())
    assert any("within" in t["output"] for t in results["tests"] if t["name"].startswith("softmax"))


def test_without_lab_every_lab_some_submission_holds_is_graded(tmp_path, data_env, course, run):
    class_dir = tmp_path / "class"
    write_student(class_dir, "ann", ["lab02"])
    write_student(class_dir, "bob", ["lab03"])
    table = {r["student"]: r for r in (grade(course, [class_dir], tmp_path / "out", run).finals and rows(tmp_path / "out"))}
    assert table["ann"]["softmax"] == "15" and table["ann"]["one_layer_net"] == "0" and table["ann"]["max_total"] == "30"
    assert "no notebook for lab03_vanilla_nn" in table["ann"]["status"] and table["ann"]["Linear"] == ""


def test_two_shards_merged_equal_one_run(tmp_path, data_env, course, run):
    class_dir = make_class(tmp_path / "class", 6)
    whole, parts = tmp_path / "whole", [tmp_path / "part1", tmp_path / "part2"]
    grade(course, [class_dir], whole, Run(run.level, device="cpu", jobs=2))
    shard_students = [{r.student for r in grade(course, [class_dir], part, run, shard=(k, 2)).finals}
                      for k, part in zip((1, 2), parts)]
    assert shard_students[0] and shard_students[1] and not shard_students[0] & shard_students[1]
    merged = tmp_path / "merged"
    merge(course, parts, merged)
    assert (merged / "grades.csv").read_text() == (whole / "grades.csv").read_text()
    for student in sorted(shard_students[0] | shard_students[1]):
        a, b = (json.loads((d / student / "results.json").read_text()) for d in (whole, merged))
        # Messages may differ in their numbers: every run draws its checks' inputs afresh.
        assert [(t["name"], t["score"], t["status"]) for t in a["tests"]] == \
            [(t["name"], t["score"], t["status"]) for t in b["tests"]]


def test_merging_parts_graded_for_other_labs_is_refused(tmp_path, data_env, course, run):
    class_dir = tmp_path / "class"
    write_student(class_dir, "ann", ["lab02", "lab03"])
    grade(course, [class_dir], tmp_path / "a", Run(run.level, device="cpu", labs=("lab02_softmax",)))
    grade(course, [class_dir], tmp_path / "b", Run(run.level, device="cpu", labs=("lab03_vanilla_nn",)))
    done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(ROOT), "merge", str(tmp_path / "a"),
                           str(tmp_path / "b"), "--out", str(tmp_path / "m")], capture_output=True, text=True)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1 and "other settings" in done.stderr


# ---- Gradescope -------------------------------------------------------------------------------

def gradescope(tmp_path: Path, course, lab: str | None, datasets: Path) -> tuple[Path, dict]:
    """A simulated /autograder: the bundle unzipped into source/, its artifacts built as setup.sh does."""
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle(course, tmp_path / "autograder.zip", lab)) as z:
        assert {"setup.sh", "run_autograder", "pyproject.toml", "course.toml"} <= set(z.namelist())
        z.extractall(root / "source")
    env = {"AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable, "AUTOGRADER_DATA": str(datasets / "cache"),
           "AUTOGRADER_IDX_PATH": str(datasets / "idx"), "AUTOGRADER_OFFLINE": "1", "AUTOGRADER_SANDBOX": "uid"}
    return root, env


def run_autograder(root: Path, env: dict) -> tuple[dict, str, float]:
    started = time.monotonic()
    done = subprocess.run(["capsh", "--drop=cap_sys_admin", "--", str(root / "source" / "run_autograder")],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    return json.loads((root / "results" / "results.json").read_text()), done.stdout + done.stderr, \
        time.monotonic() - started


@pytest.mark.parametrize("lab,unit,points", [("lab02_softmax", "softmax", 15), ("lab05_minibatch_training", None, 40)])
def test_a_gradescope_bundle_per_lab_grades_without_cap_sys_admin(lab, unit, points, tmp_path, datasets, course,
                                                                  modes_restored):
    root, env = gradescope(tmp_path, course, lab, datasets)
    # The reference solution uploaded in the release layout: the lab's folder with its utils.py.
    submission = root / "submission" / lab
    submission.mkdir(parents=True)
    for nb in write_student(tmp_path, "x", [lab[:5]]).glob("*.ipynb"):
        nb.rename(submission / nb.name)
    (submission / "utils.py").write_text((ROOT / "source" / "utils.py").read_text())
    results, log, seconds = run_autograder(root, env)
    assert results["score"] == points and sum(t["max_score"] for t in results["tests"]) == points, log
    assert seconds < 600, "Gradescope's default timeout is 10 minutes"
    assert "sandbox: uid" in log  # the grader's log reaches Gradescope's stdout
    (root / "results" / "results.json").unlink()
    subprocess.run(["rm", "-rf", str(root / "submission")], check=True)
    write_student(root, "submission", [lab[:5]], tree="release")
    results, log, _ = run_autograder(root, env)
    assert results["score"] == 0 and len(results["tests"]) > 0, log


def test_a_student_cannot_change_gradescopes_results(tmp_path, datasets, course, modes_restored):
    root, env = gradescope(tmp_path, course, "lab02_softmax", datasets)
    forge = code(f"""
        import os
        for _path in ("{root}/results/results.json", "{root}/results/forged.json"):
            try:
                with open(_path, "w") as _f:
                    _f.write('{{"score": 100}}')
            except OSError:
                pass
        if os.fork() == 0:  # and again, after grading
            try:
                os.setsid()
            except OSError:
                pass
            import time
            time.sleep(3)
            try:
                open("{root}/results/results.json", "w").write('{{"score": 100}}')
            except OSError:
                pass
            os._exit(0)
        """) + "def softmax(x, dim=-1):\n    return x\n"
    write_student(root, "submission", ["lab02"], {"softmax": forge})
    results, log, _ = run_autograder(root, env)
    time.sleep(4)
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] < 15 and results["tests"], log
    assert not (root / "results" / "forged.json").exists()


def test_bundle_is_reproducible(tmp_path, course):
    assert bundle(course, tmp_path / "a.zip", "lab02_softmax").read_bytes() == \
        bundle(course, tmp_path / "b.zip", "lab02_softmax").read_bytes()


# ---- the student's self-check, and the command line -------------------------------------------

def test_check_on_a_released_notebook_with_one_unit_solved(tmp_path, data_env):
    folder = write_student(tmp_path, "me", ["lab05"], {"template_update": reference_code("template_update")},
                           tree="release")
    done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(ROOT), "check",
                           str(folder / "minibatch_training_exercise.ipynb"), "--device", "cpu", "-q"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    passed = [line for line in lines if line.strip().startswith("PASS")]
    failed = [line for line in lines if line.strip().startswith("FAIL")]
    assert passed and all("template_update:" in line for line in passed), done.stdout
    assert failed and all("train_minibatch:" in line for line in failed), done.stdout
    assert "score so far: 11 of" in done.stdout and "hidden checks worth" in done.stdout


@pytest.mark.parametrize("args", [["-j", "0"], ["--memory-gib", "-1"], ["--min-wall", "0"], ["--cpu-factor", "x"]])
def test_numbers_that_make_no_sense_are_refused(args, tmp_path):
    done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(ROOT), "grade", str(tmp_path), "--out",
                           str(tmp_path / "out"), *args], capture_output=True, text=True)
    assert done.returncode == 2 and ("must be more than 0" in done.stderr or "is not a number" in done.stderr)


def test_progress_is_plain_lines_in_a_log(tmp_path, data_env):
    make_class(tmp_path / "class", 2)
    done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(ROOT), "grade", str(tmp_path / "class"),
                           "--out", str(tmp_path / "out"), "--device", "cpu"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "grading: 2/2 labs done" in done.stderr
    assert len(done.stderr) < 2000


def test_an_unknown_lab_is_a_one_line_error(tmp_path, data_env):
    make_class(tmp_path / "class", 1)
    done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(ROOT), "grade", str(tmp_path / "class"),
                           "--out", str(tmp_path / "out"), "--lab", "lab09_nothing"], capture_output=True, text=True)
    assert done.returncode == 2 and "no lab 'lab09_nothing'" in done.stderr and len(done.stderr.splitlines()) == 1
