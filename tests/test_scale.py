"""Grading as courses run it: reruns that grade only what changed, regrades, shards merged, lab by
lab as the weeks go, a busy machine, resuming after kill -9, a student's self-check, and a command
line that refuses nonsense.

The class and its reruns are graded through the command line, in the background from the moment the
tests are collected (tests/conftest.py); each test reads what its step left.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from autograder.bundle import bundle
from autograder.grade import GRADEBOOK
from autograder.gradebook import Gradebook
from conftest import ROOT, data_environment, grade_class, in_background, reference_code, shared_root, write_student

WRONG = "def softmax(x, dim=-1):\n    return x\n"
SLOW_SOFTMAX = ("import time\ndef softmax(x, dim=-1):\n    time.sleep(0.1)\n"
                "    e = torch.exp(x - x.amax(dim=dim, keepdim=True))\n    return e / e.sum(dim=dim, keepdim=True)\n")


def rows(out: Path) -> dict[str, dict]:
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def graded_at(out: Path) -> dict[tuple[str, str], float]:
    book = Gradebook(out / GRADEBOOK)
    try:
        return {(s, lab): t for s, lab, t in book.db.execute("SELECT student, lab, graded_at FROM labs")}
    finally:
        book.close()


def autograder(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(ROOT), *args], capture_output=True,
                          text=True, env={**os.environ, **data_environment()}, timeout=900)
    assert not check or done.returncode == 0, done.stderr[-3000:]
    return done


# ---- one class, and what becomes of it --------------------------------------------------------

CLASS: list = []
WEEKS: list = []


def start_early(config) -> None:
    if not CLASS:
        CLASS.append(in_background(a_class_and_its_reruns))
        WEEKS.append(in_background(weeks))


def a_class_and_its_reruns() -> dict:
    """Six students of lab 02 (every third wrong), ann with labs 02 and 03 and bob with lab 03 alone,
    graded without --lab and with a log for stderr; the same in two shards, merged; then rerun
    unchanged, after one student's notebook changed, and with --regrade."""
    root = Path(tempfile.mkdtemp(prefix="scale-", dir=shared_root()))
    class_dir = root / "class"
    for i in range(6):
        write_student(class_dir, f"s{i:02d}", ["lab02"], {"softmax": WRONG} if i % 3 == 0 else None)
    write_student(class_dir, "ann", ["lab02", "lab03"])
    write_student(class_dir, "bob", ["lab03"])
    steps = {}
    whole = root / "whole"
    done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(ROOT), "grade", str(class_dir), "--out",
                           str(whole), "-j", "2", "--device", "cpu"], capture_output=True, text=True,
                          env={**os.environ, **data_environment()}, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    steps["whole"] = {"rows": rows(whole), "stderr": done.stderr, "graded_at": graded_at(whole),
                      "grades": (whole / "grades.csv").read_text()}
    parts = [root / "part1", root / "part2"]
    for k, part in enumerate(parts, start=1):
        grade_class(class_dir, part, "--shard", f"{k}/2")
    steps["shards"] = [set(rows(part)) for part in parts]
    autograder("merge", *map(str, parts), "--out", str(root / "merged"))
    steps["merged"] = root / "merged"
    grade_class(class_dir, whole)
    steps["unchanged"] = graded_at(whole)
    shutil.copyfile(class_dir / "s00" / "softmax_exercise.ipynb", class_dir / "s01" / "softmax_exercise.ipynb")
    grade_class(class_dir, whole)
    steps["changed"] = {"graded_at": graded_at(whole), "rows": rows(whole)}
    grade_class(class_dir, whole, "--regrade")
    steps["regraded"] = graded_at(whole)
    return {"whole": whole, **steps}


@pytest.fixture(scope="module")
def reruns(request) -> dict:
    start_early(request.config)
    return CLASS[0].result()


def test_without_lab_every_lab_some_submission_holds_is_graded(reruns):
    table = reruns["whole"]["rows"]
    assert table["ann"]["softmax"] == table["ann"]["one_layer_net"] == "15" and table["ann"]["max_total"] == "30"
    assert table["bob"]["softmax"] == "0" and "no notebook for lab02_softmax" in table["bob"]["status"]
    assert table["ann"]["Linear"] == ""
    assert table["s00"]["softmax"] != "15" and table["s01"]["softmax"] == "15"


def test_progress_is_plain_lines_in_a_log(reruns):
    stderr, labs = reruns["whole"]["stderr"], 2 * len(reruns["whole"]["rows"])
    assert "\r" not in stderr and f"grading: {labs}/{labs} labs done" in stderr and len(stderr) < 2000, stderr


def test_two_shards_merged_equal_one_run(reruns):
    first, second = reruns["shards"]
    assert first and second and not first & second and first | second == set(reruns["whole"]["rows"])
    assert (reruns["merged"] / "grades.csv").read_text() == reruns["whole"]["grades"]


def test_a_rerun_grades_only_what_changed_and_regrade_grades_everything(reruns):
    first, unchanged = reruns["whole"]["graded_at"], reruns["unchanged"]
    assert unchanged == first, "a rerun of unchanged submissions graded something"
    changed = reruns["changed"]["graded_at"]
    assert {key for key in changed if changed[key] != first[key]} == {("s01", "lab02_softmax")}
    table = reruns["changed"]["rows"]
    assert table["s01"]["total"] == table["s00"]["total"]  # s01 now hands in s00's notebook
    assert all(reruns["regraded"][key] > changed[key] for key in changed)


def weeks() -> dict:
    """ann (the reference) and bob (a Linear without its bias) hand in labs 01 and 02: lab 01 is
    graded in week 1, lab 02 joins the same folder in week 2; lab 02 alone is also graded elsewhere,
    to merge with week 1 (refused)."""
    root = Path(tempfile.mkdtemp(prefix="weeks-", dir=shared_root()))
    class_dir = root / "class"
    write_student(class_dir, "ann", ["lab01", "lab02"])
    write_student(class_dir, "bob", ["lab01", "lab02"], {"Linear": reference_code("Linear").replace(
        "y = y + self.bias", "y = y")})
    out = root / "graded"
    grade_class(class_dir, out, "--lab", "lab01_linear_module")
    week1 = {"rows": rows(out), "summary": (out / "summary.html").read_text(), "graded_at": graded_at(out)}
    shutil.copytree(out, root / "week1")
    grade_class(class_dir, root / "lab02-alone", "--lab", "lab02_softmax")
    merged = autograder("merge", str(root / "week1"), str(root / "lab02-alone"), "--out", str(root / "m"), check=False)
    grade_class(class_dir, out, "--lab", "lab02_softmax")
    return {"week1": week1, "week2": {"rows": rows(out), "graded_at": graded_at(out), "out": out}, "merged": merged}


@pytest.fixture(scope="module")
def weekly(request) -> dict:
    start_early(request.config)
    return WEEKS[0].result()


def test_a_class_is_graded_lab_by_lab_in_one_folder_as_the_weeks_go(weekly):
    week1 = weekly["week1"]["rows"]
    assert week1["ann"]["Linear"] == "15" and week1["ann"]["max_total"] == "15" and week1["ann"]["softmax"] == ""
    assert float(week1["bob"]["Linear"]) < 15 and week1["bob"]["status"] == "ok"
    assert "lab01_linear_module" in weekly["week1"]["summary"] and "lab02_softmax" not in weekly["week1"]["summary"]
    week2 = weekly["week2"]["rows"]
    assert week2["ann"]["Linear"] == week2["ann"]["softmax"] == "15" and week2["ann"]["max_total"] == "30"
    assert week2["bob"]["Linear"] == week1["bob"]["Linear"]
    lab01 = {key: t for key, t in weekly["week1"]["graded_at"].items()}
    assert all(weekly["week2"]["graded_at"][key] == t for key, t in lab01.items()), "week 2 regraded lab 01"
    results = json.loads((weekly["week2"]["out"] / "bob" / "results.json").read_text())
    assert {t["name"].split(":")[0] for t in results["tests"]} == {"Linear", "softmax"}


def test_merging_parts_graded_for_other_labs_is_refused(weekly):
    done = weekly["merged"]
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1 and "other settings" in done.stderr


# ---- a busy machine, and a grader killed -------------------------------------------------------

def test_a_machine_five_times_too_busy_costs_the_reference_nothing_and_a_sleeper_only_its_lab(tmp_path, data_env):
    # Four hogs and the grader share one CPU, so every worker waits four fifths of its time for
    # it: lab 04's training takes longer than its budget of 1.5 times the reference's own time plus
    # half a second in real time. Time spent waiting for a CPU is not counted, so the reference still
    # gets full marks, while a sleeper is stopped.
    class_dir = tmp_path / "class"
    write_student(class_dir, "ref", ["lab04"])
    write_student(class_dir, "sleeper", ["lab02", "lab03"], {"softmax": "import time\ntime.sleep(3600)\n"})
    one_cpu = ["taskset", "-c", str(min(os.sched_getaffinity(0)))]
    hogs = [subprocess.Popen([*one_cpu, sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        grade_class(class_dir, tmp_path / "out", "--lab-factor", "1.5", "--lab-margin", "0.5", "--min-wall", "10",
                    wrapper=one_cpu)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    table = rows(tmp_path / "out")
    failed = [t for t in json.loads((tmp_path / "out" / "ref" / "results.json").read_text())["tests"]
              if t["status"] != "passed"]
    assert table["ref"]["train_online"] == "15" and "lab04" not in table["ref"]["status"], failed
    assert table["sleeper"]["softmax"] == "0" and table["sleeper"]["one_layer_net"] == "15"
    results = json.loads((tmp_path / "out" / "sleeper" / "results.json").read_text())
    assert any("within" in t["output"] or "time budget" in t["output"] for t in results["tests"]
               if t["name"].startswith("softmax"))


@pytest.mark.alone
def test_kill_9_in_the_middle_then_the_same_command_finishes_the_job(tmp_path, data_env):
    class_dir = tmp_path / "class"
    for i in range(5):
        write_student(class_dir, f"s{i:02d}", ["lab02"], {"softmax": SLOW_SOFTMAX})
    out = tmp_path / "out"
    command = [sys.executable, "-m", "autograder", "--course", str(ROOT), "grade", str(class_dir), "--out", str(out),
               "--quiet", "--device", "cpu"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if len(graded_at(out) if (out / GRADEBOOK).is_file() else {}) >= 2:
            break
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = graded_at(out)
    assert 2 <= len(before) < 5, f"the kill came too late or too early: {sorted(before)}"
    assert subprocess.run(command, capture_output=True).returncode == 0
    after = graded_at(out)
    assert all(after[k] == before[k] for k in before), "a lab graded before the kill was graded again"
    table = rows(out)
    assert sorted(table) == [f"s{i:02d}" for i in range(5)] and all(r["total"] == "15" for r in table.values())
    for student in table:
        assert json.loads((out / student / "results.json").read_text())["score"] == 15
        assert (out / student / "feedback.html").is_file()
    assert not any("autograder" in _cmdline(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid())


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore")
    except OSError:
        return ""


# ---- the bundle, the student's self-check, and the command line --------------------------------

def test_bundle_is_reproducible(tmp_path, course):
    assert bundle(course, tmp_path / "a.zip", "lab02_softmax").read_bytes() == \
        bundle(course, tmp_path / "b.zip", "lab02_softmax").read_bytes()


def test_check_on_a_released_notebook_with_one_unit_solved(tmp_path, data_env):
    folder = write_student(tmp_path, "me", ["lab05"], {"template_update": reference_code("template_update")},
                           tree="release")
    done = autograder("check", str(folder / "minibatch_training_exercise.ipynb"), "--device", "cpu", "-q")
    lines = done.stdout.splitlines()
    passed = [line for line in lines if line.strip().startswith("PASS")]
    failed = [line for line in lines if line.strip().startswith("FAIL")]
    assert passed and all("template_update:" in line for line in passed), done.stdout
    assert failed and all("train_minibatch:" in line for line in failed), done.stdout
    assert "score so far: 11 of" in done.stdout and "hidden checks worth" in done.stdout


def test_check_names_a_file_that_is_not_an_exercise_and_what_is_wrong(tmp_path, data_env):
    (tmp_path / "broken.ipynb").write_text('{"cells": [ this')
    demo = ROOT / "release" / "lab02_softmax" / "softmax_demo.ipynb"
    for path, said in ((tmp_path / "broken.ipynb", "not a readable notebook"), (demo, "this is a demo notebook"),
                       (tmp_path / "missing.ipynb", "no such file")):
        done = autograder("check", str(path), "-q", check=False)
        assert done.returncode == 2 and str(path) in done.stderr and said in done.stderr, done.stderr


@pytest.mark.parametrize("args", [["-j", "0"], ["--memory-gib", "-1"], ["--min-wall", "0"], ["--cpu-factor", "x"]])
def test_numbers_that_make_no_sense_are_refused(args, tmp_path):
    done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(ROOT), "grade", str(tmp_path), "--out",
                           str(tmp_path / "out"), *args], capture_output=True, text=True)
    assert done.returncode == 2 and ("must be more than 0" in done.stderr or "is not a number" in done.stderr)


def test_an_unknown_lab_is_a_one_line_error(tmp_path, data_env):
    write_student(tmp_path / "class", "s00", ["lab02"])
    done = autograder("grade", str(tmp_path / "class"), "--out", str(tmp_path / "out"), "--lab", "lab09_nothing",
                      check=False)
    assert done.returncode == 2 and "no lab 'lab09_nothing'" in done.stderr and len(done.stderr.splitlines()) == 1


def test_the_command_line_answers_at_once_without_torch():
    for args in (["--help"], ["grade", "--help"], ["--version"], ["review", "/nonexistent"]):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "autograder", *args], capture_output=True,
                              text=True)
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
        assert "torch" not in imported and "nbformat" not in imported, args
