"""Grading a class at scale: resuming after kill -9, shards merged, the Gradescope bundle, reports.

Students here hold only the softmax lab, slowed a little, so that a run takes seconds and can be
interrupted in the middle.
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


from autograder.bundle import bundle
from autograder.gradebook import Gradebook
from autograder.grade import GRADEBOOK, grade, merge
from conftest import ROOT, write_student

SLOW_SOFTMAX = ("import time\ndef softmax(x, dim=-1):\n    time.sleep(0.2)\n"
                "    e = torch.exp(x - x.amax(dim=dim, keepdim=True))\n    return e / e.sum(dim=dim, keepdim=True)\n")


def make_class(root: Path, n: int) -> Path:
    for i in range(n):
        write_student(root, f"s{i:02d}", ["lab02"], {"softmax": SLOW_SOFTMAX if i % 3 else "def softmax(x, dim=-1):\n    return x\n"})
    return root


def rows(out: Path) -> list[dict]:
    with open(out / "grades.csv") as f:
        return list(csv.DictReader(f))


def graded_at(out: Path) -> dict[str, float]:
    book = Gradebook(out / GRADEBOOK)
    try:
        return dict(book.db.execute("SELECT student, graded_at FROM students"))
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
        done = graded_at(out) if (out / GRADEBOOK).is_file() else {}
        if len([s for s in done if s.startswith("s")]) >= 3:
            break
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = graded_at(out)
    students_before = [s for s in before if s.startswith("s")]
    assert 3 <= len(students_before) < 8, f"the kill came too late or too early: {sorted(before)}"
    assert subprocess.run(command, capture_output=True).returncode == 0
    after = graded_at(out)
    assert all(after[s] == before[s] for s in before), "a student graded before the kill was graded again"
    assert_consistent(out, [f"s{i:02d}" for i in range(8)])
    assert sum(1 for p in os.listdir("/proc") if p.isdigit() and "autograder.worker" in _cmdline(p)) == 0


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore")
    except OSError:
        return ""


def test_relative_out_folder(tmp_path, data_env):
    make_class(tmp_path / "class", 1)
    command = [sys.executable, "-m", "autograder", "--course", str(ROOT), "grade", "class", "--out", "graded",
               "--quiet", "--device", "cpu"]
    assert subprocess.run(command, cwd=tmp_path, capture_output=True).returncode == 0
    assert_consistent(tmp_path / "graded", ["s00"])


def test_rerun_grades_only_what_changed_and_regrade_forces(tmp_path, data_env, course):
    class_dir = make_class(tmp_path / "class", 3)
    out = tmp_path / "out"
    grade(course, [class_dir], out, device="cpu")
    first = graded_at(out)
    (class_dir / "s01" / "softmax_exercise.ipynb").write_text(
        (class_dir / "s00" / "softmax_exercise.ipynb").read_text())  # s01 now submits s00's notebook
    results = {r.student: r for r in grade(course, [class_dir], out, device="cpu")}
    second = graded_at(out)
    assert second["s00"] == first["s00"] and second["s02"] == first["s02"] and second["s01"] > first["s01"]
    assert results["s01"].total == results["s00"].total
    grade(course, [class_dir], out, device="cpu", regrade=True)
    assert all(graded_at(out)[s] > second[s] for s in ("s00", "s01", "s02"))


def test_two_shards_merged_equal_one_run(tmp_path, data_env, course):
    class_dir = make_class(tmp_path / "class", 6)
    whole, parts = tmp_path / "whole", [tmp_path / "part1", tmp_path / "part2"]
    grade(course, [class_dir], whole, device="cpu", jobs=2)
    shard_students = [{r.student for r in grade(course, [class_dir], part, device="cpu", shard=(k, 2))}
                      for k, part in zip((1, 2), parts)]
    assert shard_students[0] and shard_students[1] and not shard_students[0] & shard_students[1]
    merged = tmp_path / "merged"
    merge(course, parts, merged)
    assert (merged / "grades.csv").read_text() == (whole / "grades.csv").read_text()
    for student in sorted(shard_students[0] | shard_students[1]):
        a, b = (json.loads((d / student / "results.json").read_text()) for d in (whole, merged))
        assert [(t["name"], t["score"], t["output"]) for t in a["tests"]] == \
            [(t["name"], t["score"], t["output"]) for t in b["tests"]]


def test_bundle_grades_a_submission_in_a_simulated_gradescope_layout(tmp_path, data_env, course):
    archive = bundle(course, tmp_path / "autograder.zip")
    root = tmp_path / "autograder"
    with zipfile.ZipFile(archive) as z:
        assert {"setup.sh", "run_autograder", "pyproject.toml"} <= set(z.namelist())
        z.extractall(root / "source")
    write_student(root, "submission", ["lab02"], {"softmax": SLOW_SOFTMAX})
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, check=True, timeout=600)
    results = json.loads((root / "results" / "results.json").read_text())
    softmax = [t for t in results["tests"] if t["name"].startswith("softmax:")]
    assert results["score"] == 15 and len(softmax) == 8 and all(t["status"] == "passed" for t in softmax)
    assert {t["visibility"] for t in results["tests"]} == {"visible", "after_published"}


def test_bundle_says_why_when_a_submission_cannot_be_graded(tmp_path, data_env, course):
    archive = bundle(course, tmp_path / "autograder.zip")
    root = tmp_path / "autograder"
    with zipfile.ZipFile(archive) as z:
        z.extractall(root / "source")
    (root / "submission").mkdir()
    (root / "submission" / "notes.txt").write_text("no notebook here")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, check=True, timeout=600)
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0 and "no notebooks found" in results["output"]


def test_bundle_is_reproducible(tmp_path, course):
    assert bundle(course, tmp_path / "a.zip").read_bytes() == bundle(course, tmp_path / "b.zip").read_bytes()
