"""The pytest plugin that runs the check modules against submissions.

A check is a pytest test in `autograder/checks/<lab>.py` named `test_<unit>_<what>`, whose
docstring says what it checks, with markers for its points and visibility:

    @pytest.mark.points(5)
    @pytest.mark.hidden            # results.json: after_published, message only
    def test_softmax_is_stable(submission): ...

It asks for what it needs — `submission` (a handle on this student's worker for the lab),
`fashion_mnist_test`, `device` — and the plugin supplies it, once per student and lab.
Outcomes are taken from pytest's reports into the gradebook, never parsed from text.
"""
from __future__ import annotations

import ast
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from .course import Course
from .feedback import Pages
from .gradebook import Gradebook
from .reports import from_gradebook, write_student
from .sandbox import Limits, Server, WorkerFailure


def pytest_addoption(parser) -> None:
    group = parser.getgroup("autograder")
    group.addoption("--autograder-manifest", help="JSON: course root, limits, students and their code")
    group.addoption("--autograder-gradebook", help="the SQLite gradebook each student's record goes to")
    group.addoption("--autograder-device", default="cpu", help="cpu or cuda")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "points(n): what the check is worth")
    config.addinivalue_line("markers", "hidden: a check the student sees only after grades are published")
    if config.getoption("--autograder-manifest"):
        config.pluginmanager.register(Grading(config), "autograder-grading")


def unit_of(test_name: str, units: list[str]) -> str | None:
    """The unit a check belongs to: the longest unit name that `test_<unit>_` starts with."""
    matches = [u for u in units if test_name.startswith(f"test_{u}_")]
    return max(matches, key=len) if matches else None


def check_label(item) -> str:
    doc = (item.function.__doc__ or "").strip().splitlines()
    return doc[0] if doc else item.originalname.removeprefix("test_").replace("_", " ")


class LabRun:
    """One student's lab: its worker, started when a check first needs it and started afresh
    (within the lab's time limit) when an earlier check stopped it, so that a crash costs
    only the checks it happened in."""

    MAX_STARTS = 8

    def __init__(self, server: Server, lab: dict[str, Any]):
        self.server, self.lab = server, lab
        self.worker, self.loaded, self.problem = None, {}, lab.get("problem")
        self.deadline: float | None = None
        self.stops: list[str] = []
        self.output = ""

    def _retire(self) -> None:
        self.stops.append(self.worker.reason)
        self.output += self.worker.output_text()
        self.worker.close()
        self.worker = None

    def start(self) -> None:
        if self.problem or (self.worker is not None and self.worker.reason is None):
            return
        if self.worker is not None:
            self._retire()
        if len(self.stops) >= self.MAX_STARTS:
            self.problem = f"the submission's process was stopped {len(self.stops)} times"
            return
        try:
            self.worker = self.server.worker(self.deadline)
        except (OSError, RuntimeError) as e:
            # Our fault, not the student's: stop without committing them, so a rerun grades them.
            pytest.exit(f"grader fault: {e}", returncode=3)
        self.deadline = self.worker.deadline
        try:
            status = self.worker.load(self.lab["setup"], self.lab["units"])
        except WorkerFailure as e:
            self.problem = f"the notebook's code could not be loaded: {e}"
            return
        if "sandbox_error" in status:
            pytest.exit(f"grader fault: the worker's sandbox could not be set up ({status['sandbox_error']})",
                        returncode=3)
        if "setup_error" in status:
            self.problem = f"grader fault: the assignment's setup cell failed ({status['setup_error']})"
        self.loaded = status.get("loaded", {})

    def close(self) -> dict:
        if self.worker is not None:
            if self.worker.reason is None:
                self.worker.kill("closed")
            self._retire()
        stops = [s for s in self.stops if s != "closed"]
        return {"problem": self.problem, "output": self.output,
                "stopped": f"{stops[-1]}" + (f" ({len(stops)} times)" if len(stops) > 1 else "") if stops else None}


class Submission:
    """What a check holds: run probes in this student's worker, read their code."""

    def __init__(self, run: LabRun, unit: str, labs: dict[str, dict], kept: dict):
        self._run, self.unit, self._labs, self._kept = run, unit, labs, kept

    def keep(self, name: str, value: Any) -> None:
        """Keep a tensor the worker returned (e.g. learned templates) for the student's feedback."""
        import torch

        if isinstance(value, torch.Tensor):
            self._kept[name] = value

    def source(self, unit: str | None = None) -> str:
        return self._run.lab["units"].get(unit or self.unit, "")

    def other_lab_code(self, unit: str) -> dict:
        """The student's cell for a unit of another lab, with that lab's setup cells (to run in a probe)."""
        for lab in self._labs.values():
            if unit in lab.get("units", {}):
                return {"own_net_code": lab["units"][unit], "setup": lab["setup"]}
        return {"own_net_code": "", "setup": []}

    def tree(self, unit: str | None = None) -> ast.Module:
        return ast.parse(self.source(unit))

    def run(self, probe: Callable, **args: Any) -> Any:
        try:
            return self._run.worker.run(probe.__probe_id__, args, f"the check of {self.unit}")
        except WorkerFailure as e:
            pytest.fail(str(e), pytrace=False)


class Grading:
    """One grading process: every check for its students, student by student, each student's
    record committed to the gradebook as soon as their last lab is done."""

    def __init__(self, config):
        self.manifest = json.loads(Path(config.getoption("--autograder-manifest")).read_text())
        self.gradebook = Gradebook(Path(config.getoption("--autograder-gradebook")))
        self.out, self.pages = self.gradebook.path.parent, None
        self.device_name = config.getoption("--autograder-device")
        if self.device_name == "auto":
            import torch

            self.device_name = "cuda" if torch.cuda.is_available() else "cpu"
        self.course = Course(Path(self.manifest["course"]))
        # Started now, so that it warms up while pytest collects the checks.
        self.server = Server(self.course, self.device_name, Limits(**self.manifest.get("limits", {})),
                             hide=self.manifest["hide"])
        self.students = sorted(self.manifest["students"])
        self.pending: dict[str, dict] = {s: {"checks": [], "labs": [], "artifacts": {}, "started": None}
                                         for s in self.students}
        self.modules: set[str] = set()

    # -- parametrising every check over the students, student by student --------------------
    def pytest_generate_tests(self, metafunc) -> None:
        if "student" in metafunc.fixturenames:
            metafunc.parametrize("student", self.students, ids=self.students, scope="module")

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items) -> None:
        order = {s: i for i, s in enumerate(self.students)}
        labs = sorted({Path(item.module.__file__).stem for item in items})
        self.modules = set(labs)
        position = {id(item): i for i, item in enumerate(items)}
        items.sort(key=lambda item: (order[item.callspec.params["student"]],
                                     labs.index(Path(item.module.__file__).stem), position[id(item)]))

    @pytest.fixture(scope="session")
    def device(self) -> str:
        return self.device_name

    @pytest.fixture(scope="session")
    def fashion_mnist_test(self):
        images, labels = self.course.helpers().load("fashion-mnist", "test")
        return images.to(self.device_name), labels.to(self.device_name)

    @pytest.fixture(scope="module")
    def lab_run(self, request, student):
        lab = Path(request.module.__file__).stem
        pending = self.pending[student]
        pending["started"] = pending["started"] or time.monotonic()
        run = LabRun(self.server, self.manifest["students"][student].get(lab, {"problem": "no notebook"}))
        yield run
        try:
            summary = run.close()
        except Exception as e:  # tearing a worker down must never lose the student's row
            summary = {"problem": None, "stopped": f"could not be cleaned up ({type(e).__name__})", "output": ""}
        pending["labs"].append({"lab": lab, **summary})
        if len(pending["labs"]) == len(self.modules):
            self._commit(student)

    def _commit(self, student: str) -> None:
        """The student's record into the gradebook in one transaction, then their pages from it."""
        pending = self.pending.pop(student)
        self.gradebook.record(student, self.manifest["fingerprints"][student],
                              round(time.monotonic() - pending["started"], 2), pending["checks"], pending["labs"],
                              pending["artifacts"], time.time())
        if self.pages is None:
            self.pages = Pages(self.course, self.gradebook)
        write_student(self.out, from_gradebook(self.course, self.gradebook, [student])[0], self.pages)

    @pytest.fixture
    def submission(self, request, lab_run):
        student = request.node.callspec.params["student"]
        unit = unit_of(request.node.originalname, self.manifest["units"][Path(request.module.__file__).stem])
        lab_run.start()
        if lab_run.problem:
            pytest.fail(lab_run.problem, pytrace=False)
        if unit not in lab_run.lab["units"]:
            pytest.fail(f"{unit} was not found in the notebook (no solution cell with grade_id {unit!r} "
                        f"and no top-level definition of {unit})", pytrace=False)
        if lab_run.loaded.get(unit):
            pytest.fail(f"the cell defining {unit} raised {lab_run.loaded[unit]}", pytrace=False)
        return Submission(lab_run, unit, self.manifest["students"][student], self.pending[student]["artifacts"])

    # -- collecting outcomes -----------------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and report.failed):
            lab = Path(item.module.__file__).stem
            points = item.get_closest_marker("points")
            self.pending[item.callspec.params["student"]]["checks"].append({
                "lab": lab, "unit": unit_of(item.originalname, self.manifest["units"][lab]),
                "check": item.originalname, "label": check_label(item),
                "points": float(points.args[0]) if points else 0.0,
                "hidden": item.get_closest_marker("hidden") is not None,
                "passed": report.passed, "seconds": round(call.duration, 3),
                "message": _message(call.excinfo) if report.failed else "",
            })

    def pytest_sessionfinish(self, session) -> None:
        self.server.close()
        self.gradebook.close()


def _message(excinfo) -> str:
    if excinfo is None:
        return ""
    error = excinfo.value
    if isinstance(error, AssertionError):
        return str(error).split("\nassert ")[0].strip() or "the check failed"
    if excinfo.typename == "Failed":  # pytest.fail: our own words already
        return str(error)
    return f"the grader could not judge the reply ({excinfo.typename}: {error})"
