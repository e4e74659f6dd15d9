"""The pytest plugin that runs a course's check modules against submissions.

A check is a pytest test in `<checks>/<lab>.py` named `test_<unit>_<what>`, whose docstring
says what it checks, with markers for its points, its visibility and the notebook test cell it
stands for:

    @pytest.mark.points(2)
    @pytest.mark.cell("test_softmax_stable")
    @pytest.mark.hidden            # results.json: after_published, message only
    def test_softmax_is_stable(submission): ...

It asks for what it needs (`submission`, a handle on the student's unit in a sandboxed worker,
`device`, and the course's own fixtures from its conftest.py) and the harness supplies it.
Outcomes come from pytest's own reports, artifacts ride on them (user_properties), and each
student's lab is recorded into the gradebook in one transaction when it is done. Nothing is
rendered here: reports.py does that from the gradebook.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from . import rules
from .confine import Level
from .course import Course, secret_class_order
from .gradebook import Gradebook
from .messages import Build, Call, Confined, Load, Loaded, Outcome, SetupDone, TrainingSet
from .sandbox import Limits
from .server import Server, Worker, WorkerFailure

GRADING = "autograder-grading"
WORKER_TEXT = 2000  # characters of worker-made text a check's message may carry
LOAD = "load"  # the reference-cost key of loading a lab's cells
LAB = "lab"  # the reference-cost key of a whole lab's wall-clock seconds


def pytest_addoption(parser) -> None:
    group = parser.getgroup("autograder")
    group.addoption("--autograder-spec-fd", type=int, help="file descriptor to read the run's JSON spec from")
    group.addoption("--autograder-queue-fd", type=int,
                    help="socket to ask for the next student on (without it, every student of the spec)")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "points(n): what the check is worth")
    config.addinivalue_line("markers", "hidden: a check the student sees only after grades are published")
    config.addinivalue_line("markers", "cell(grade_id): the notebook test cell the check stands for")
    config.addinivalue_line("markers", "training_set: the lab's workers hold the course's training set "
                            "(a check module's pytestmark)")
    config.addinivalue_line("markers", "rule: a check of a rule read from the source (a unit that loses points on "
                            "these alone is in the review queue)")
    fd = config.getoption("--autograder-spec-fd")
    if fd is not None:
        with os.fdopen(fd) as f:
            spec = json.load(f)
        config.pluginmanager.register(Grading(spec, config.getoption("--autograder-queue-fd")), GRADING)


def _grading(request) -> "Grading":
    return request.config.pluginmanager.get_plugin(GRADING)


@pytest.fixture(scope="session")
def device(request) -> str:
    """Where trainers and accuracy checks run: cpu or cuda."""
    return _grading(request).device_name


@pytest.fixture(scope="session")
def course(request) -> Course:
    return _grading(request).course


@pytest.fixture(scope="module")
def lab_run(request, student):
    """One student's lab, for all the checks of its module; recorded when they are done."""
    grading = _grading(request)
    lab = Path(request.module.__file__).stem
    code = grading.spec["students"][student]["labs"].get(lab) or {"problem": f"no notebook for {lab}",
                                                                   "setup": [], "units": {}}
    run = LabRun(grading.server, lab, code, grading.costs.get(lab, {}), grading.limits,
                 data=request.node.get_closest_marker("training_set") is not None)
    grading.pending[(student, lab)] = {"checks": [], "artifacts": [], "reviews": []}
    yield run
    try:
        summary = run.close()
    except Exception as e:  # tearing a worker down must never lose the student's row
        summary = {"problem": None, "stopped": f"could not be cleaned up ({type(e).__name__}: {e})", "output": "",
                   "notebook": code.get("notebook")}
    if not run.faulted:
        grading.record(student, lab, run, summary)


@pytest.fixture(scope="session")
def class_order(request):
    """order(n): the run's secret renaming of n classes (the workers' training labels are renamed
    by it, so weights fitted anywhere but on them score by chance)."""
    return _grading(request).class_order


@pytest.fixture(autouse=True)
def secret_inputs(request) -> None:
    """Seed every check's random inputs from a secret of the run and the check's id (its student
    included): what a check sends cannot be known, nor recorded by one submission for another."""
    grading = _grading(request)
    if grading is not None:
        digest = hashlib.sha256(f"{grading.spec['secret']}:{request.node.nodeid}".encode()).digest()
        torch.manual_seed(int.from_bytes(digest[:8], "big"))


@pytest.fixture
def submission(request, lab_run) -> "UnitUnderTest":
    """The student's unit this check is about (`test_<unit>_...`), in its sandboxed worker."""
    grading = _grading(request)
    student = request.node.callspec.params["student"]
    unit = unit_of(request.node.originalname, grading.spec["units"][lab_run.lab])
    if lab_run.problem:
        pytest.fail(lab_run.problem, pytrace=False)
    return UnitUnderTest(grading, request.node, lab_run, student, unit,
                         request.node.get_closest_marker("hidden") is not None)


def unit_of(test_name: str, units) -> str | None:
    """The unit a check belongs to: the longest unit name that `test_<unit>_` starts with."""
    matches = [u for u in units if test_name.startswith(f"test_{u}_")]
    return max(matches, key=len) if matches else None


def check_label(item) -> str:
    doc = (item.function.__doc__ or "").strip().splitlines()
    return doc[0] if doc else item.originalname.removeprefix("test_").replace("_", " ")


def _lab_of(item) -> str:
    return Path(item.module.__file__).stem


def _cap(text: str, limit: int = WORKER_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 20] + " [... cut short]"


class LabRun:
    """One student's lab. Its workers are started when a check first needs them: one for the
    visible checks and one for the hidden ones (so that nothing a hidden check sends can come back
    in a visible check's message), one more for checks that also load another lab's unit. A
    worker stopped by a check is started afresh for the next, so a crash costs only the checks it
    happened in; a lab whose code cannot even load fails all its checks at once, and so does a lab
    that runs out of its time budget (a multiple of the reference's own time for it)."""

    MAX_STARTS = 6  # workers a lab may need, crashes included
    MAX_TIME_STOPS = 2  # of which stopped for time: a hanging submission costs minutes, not more

    def __init__(self, server: Server, lab: str, code: dict, costs: dict[str, float], limits: Limits,
                 data: bool = False):
        self.server, self.lab, self.code, self.costs, self.limits, self.data = server, lab, code, costs, limits, data
        self.workers: dict[tuple, tuple[Worker, dict]] = {}
        self.problem: str | None = code.get("problem")
        self.stops: list[str] = []
        self.time_stops = 0
        self.output = ""
        self.load_cpu = 0.0
        self.faulted = False
        self.held_before = 0.0  # by the workers retired
        self.budget = limits.lab_budget(costs.get(LAB))
        reference = f"{limits.lab_factor:g} times what the reference solution needs, plus " \
                    f"{limits.lab_margin_seconds:g} s" if LAB in costs else "the default for a lab"
        self.over_budget = f"took more than this lab's time budget of {self.budget:.0f} s ({reference})"

    def seconds(self) -> float:
        """Seconds the submission took to answer for this lab: its workers' calls, not counting
        waits for a CPU (a busy machine's time) or the grader's own work between the calls."""
        return self.held_before + sum(worker.held for worker, _ in self.workers.values())

    def left(self) -> float:
        """Seconds left of the lab's time budget."""
        return self.budget - self.seconds()

    def fault(self, what: str) -> None:
        """Our fault, not the student's: stop without recording this lab, so a rerun grades it."""
        self.faulted = True
        pytest.exit(f"grader fault: {what}", returncode=3)

    def _retire(self, key: tuple) -> None:
        worker, _ = self.workers.pop(key)
        worker.close()
        self.held_before += worker.held
        if worker.reason != "closed":
            self.stops.append(worker.reason)
            self.time_stops += worker.stopped_for_time
            if worker.reason == self.over_budget:
                self.problem = f"the lab was stopped: it {self.over_budget}"
        self.output += worker.output_text()

    def exchange(self, worker: Worker, message, expect: type, what: str, cpu: float, wall: float):
        """worker.exchange within what is left of the lab's budget as well as the call's own limits."""
        left = self.left()
        if left < wall:
            return worker.exchange(message, expect, what, cpu, left, out_of_time=self.over_budget)
        return worker.exchange(message, expect, what, cpu, wall)

    def worker(self, key: tuple, extra: dict[str, Any]) -> tuple[Worker, dict]:
        """The worker for `key` (hidden or not, extra units), its cells loaded: (worker, load errors)."""
        if key in self.workers and self.workers[key][0].reason is not None:
            self._retire(key)
        if key not in self.workers:
            if len(self.stops) >= self.MAX_STARTS or self.time_stops >= self.MAX_TIME_STOPS:
                self.problem = f"the submission's process was stopped {len(self.stops)} times (last: it {self.stops[-1]})"
            if self.problem:
                pytest.fail(self.problem, pytrace=False)
            try:
                worker = self.server.worker(data=self.data)
            except (OSError, RuntimeError) as e:
                self.fault(f"{e}")
            cpu, wall = self.limits.budget(self.costs.get(LOAD))
            try:
                # No student code has run before these two replies: they can be believed.
                confined = worker.exchange(None, Confined, "starting", cpu, wall)
                if confined.error:
                    self.fault(f"the worker's sandbox could not be set up ({confined.error})")
                load = Load(setup=tuple(extra.get("setup", ())) + tuple(self.code["setup"]),
                            units={**self.code["units"], **extra.get("units", {})})
                setup = worker.exchange(load, SetupDone, "running the provided cells", cpu, wall)
                if setup.error:
                    self.fault(f"the provided cells failed ({setup.error})")
                loaded = self.exchange(worker, None, Loaded, "loading the notebook's code", cpu - worker.cpu_used,
                                       wall)
                self.load_cpu = max(self.load_cpu, worker.cpu_used)
            except WorkerFailure as e:
                self.workers[key] = (worker, {})
                self._retire(key)
                self.problem = self.problem or f"the notebook's code could not be loaded: {e}"
                pytest.fail(self.problem, pytrace=False)
            self.workers[key] = (worker, dict(loaded.errors))
        return self.workers[key]

    def close(self) -> dict:
        for key in list(self.workers):
            self._retire(key)
        stops = self.stops
        return {"problem": self.problem, "output": self.output, "load_cpu": round(self.load_cpu, 3),
                "notebook": self.code.get("notebook"),
                "stopped": (stops[-1] + (f" ({len(stops)} times)" if len(stops) > 1 else "")) if stops else None}


class UnitUnderTest:
    """What a check holds: the student's unit, to call in its worker and to read."""

    training_images, training_labels = TrainingSet("images"), TrainingSet("labels")

    def __init__(self, grading: "Grading", item, run: LabRun, student: str, unit: str, hidden: bool,
                 extra: dict | None = None):
        self._grading, self._item, self._run = grading, item, run
        self.student, self.unit, self.hidden, self._extra = student, unit, hidden, extra or {}
        self.source = run.code["units"].get(unit, "")
        self.facts = rules.facts(self.source, rules.provided_names(tuple(run.code["setup"])),
                                 rules.policy(grading.course))
        self._budget = grading.limits.budget(run.costs.get(item.originalname))
        self._held_before = run.seconds()

    def call(self, target: str | Build, *args: Any, what: str = "", grad: bool = True, requires_grad=(),
             backward: torch.Tensor | None = None, on_device: bool = False, seed: int | None = None,
             **kwargs: Any) -> Outcome:
        """Call `target` (a name the cells define, or a Build of one) on these values in the
        worker. A failing call fails the check, saying `what` raised what."""
        key = (self.hidden, tuple(sorted(self._extra.get("units", {}))))
        worker, errors = self._run.worker(key, self._extra)
        for unit in (self.unit, *self._extra.get("units", {})):
            if unit not in errors:
                pytest.fail(f"{unit} was not found in the notebook (no solution cell with grade_id {unit!r} "
                            f"and no top-level definition of {unit})", pytrace=False)
            if errors[unit]:
                pytest.fail(f"the cell defining {unit} raised {_cap(errors[unit])}", pytrace=False)
        cpu, wall = self._budget
        try:
            outcome = self._run.exchange(
                worker, Call(target, args, kwargs, grad, tuple(requires_grad), backward, on_device, seed), Outcome,
                f"the check of {self.unit}", cpu - self._grading.cpu_spent(self._item),
                wall - (self._run.seconds() - self._held_before))
        except WorkerFailure as e:
            pytest.fail(_cap(self._run.problem or str(e)), pytrace=False)
        finally:
            self._grading.add_cpu(self._item, worker.cpu_used)
        if outcome.error is not None:
            name = what or (target if isinstance(target, str) else f"{target.cls}(...)")
            pytest.fail(f"{name} raised {_cap(outcome.error)}", pytrace=False)
        return outcome

    def class_order(self, n: int) -> torch.Tensor:
        return self._grading.class_order(n)

    def check_result(self, name: str) -> tuple[bool, str]:
        """Whether the check `name` of this lab passed earlier in this run, and its message."""
        done = self._grading.pending[(self.student, self._run.lab)]["checks"]
        found = next((c for c in done if c["check"] == name), None)
        return (found["passed"], found["message"]) if found else (False, f"{name} did not run")

    @staticmethod
    def draw_seed() -> int:
        """A seed for the worker's own random draws, drawn like every input of a check."""
        return int(torch.randint(0, 2**31 - 1, ()))

    def passed(self, unit: str) -> bool:
        """Whether `unit` (of another lab) passed all its checks in this run."""
        return self._grading.unit_passed(self.student, unit)

    def with_unit(self, unit: str) -> "UnitUnderTest":
        """This unit, in a worker that also loads the student's cell of `unit` (another lab's)."""
        for lab, code in self._grading.spec["students"][self.student]["labs"].items():
            if unit in code["units"]:
                extra = {"setup": code["setup"], "units": {unit: code["units"][unit]}}
                return UnitUnderTest(self._grading, self._item, self._run, self.student, self.unit, self.hidden, extra)
        pytest.fail(f"{unit} was not found in the submission", pytrace=False)

    def review(self, why: str) -> None:
        """Ask a TA to look at this unit (`review: <unit> <why>` in the row), whatever the points."""
        self._item.user_properties.append(("review", f"{self.unit} {why}"))

    def keep(self, name: str, value: torch.Tensor, picture: str | None = None) -> None:
        """Keep a tensor (e.g. learned templates) with the check's outcome, for the feedback;
        `picture` names how the course's feedback draws it."""
        if isinstance(value, torch.Tensor):
            self._item.user_properties.append(("artifact", (name, picture, value.detach().cpu())))


class Grading:
    """One grading process: every check for its students, student by student and lab by lab,
    each lab recorded into the gradebook as soon as it is done."""

    def __init__(self, spec: dict, queue: int | None = None):
        self.spec = spec
        self.gradebook = Gradebook(Path(spec["gradebook"]))
        self.device_name = spec["device"]
        self.limits = Limits(**spec["limits"])
        self.students = spec.get("order") or sorted(spec["todo"])
        self.position = {s: i for i, s in enumerate(self.students)}
        self.queue = socket.socket(fileno=queue).makefile("rwb", buffering=0) if queue is not None else None
        self.current: float | None = None  # the index of the student this process grades now
        self.labs = set(spec["labs"])
        self.costs: dict[str, dict[str, float]] = spec.get("costs", {})
        self.course = Course(Path(spec["course"]))
        # Started now, so that it warms up while pytest collects the checks.
        self.server = Server(self.course, Level(**spec["level"]), self.limits, self.device_name,
                             [Path(p) for p in spec["protected"]], labels=self.training_labels)
        self.pending: dict[tuple[str, str], dict] = {}
        self._cpu: dict[str, float] = {}

    def class_order(self, n: int) -> torch.Tensor:
        """The run's secret renaming of n classes, as the workers' training labels have it."""
        return secret_class_order(self.spec["secret"], n)

    def training_labels(self) -> torch.Tensor:
        """The training labels the workers hold: renamed here, so that no worker holds the order."""
        _, labels = self.course.helpers().load_arrays(self.course.dataset, self.course.train_split)
        labels = torch.from_numpy(labels.astype("int64"))
        return self.class_order(int(labels.max()) + 1)[labels]

    # -- which checks run, in which order ------------------------------------------------------
    def pytest_generate_tests(self, metafunc) -> None:
        if "student" in metafunc.fixturenames:  # ids by position: a folder name may be any text
            metafunc.parametrize("student", self.students, ids=[f"s{i}" for i in range(len(self.students))],
                                 scope="module")

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        """Run a check only if its student is this process's: when done with one student, ask
        for the next (students are handed out in the run's order, so each process sees its own
        in order and skips the others')."""
        if self.queue is None:
            return None
        index = self.position[item.callspec.params["student"]]
        if self.current is None or index > self.current:
            self.queue.write(b"next\n")
            answer = int(self.queue.readline() or b"-1")
            self.current = answer if answer >= 0 else float("inf")
        return None if index == self.current else True

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items) -> None:
        todo = self.spec["todo"]
        kept = [i for i in items if _lab_of(i) in todo[i.callspec.params["student"]] and
                not (self.spec.get("public_only") and i.get_closest_marker("hidden"))]
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        position = {id(item): i for i, item in enumerate(kept)}
        # Student by student, lab by lab, visible checks before hidden ones.
        kept.sort(key=lambda i: (self.position[i.callspec.params["student"]], _lab_of(i),
                                 i.get_closest_marker("hidden") is not None, position[id(i)]))
        items[:] = kept

    def cpu_spent(self, item) -> float:
        return self._cpu.get(item.nodeid, 0.0)

    def add_cpu(self, item, seconds: float) -> None:
        self._cpu[item.nodeid] = self._cpu.get(item.nodeid, 0.0) + seconds

    def unit_passed(self, student: str, unit: str) -> bool:
        lab = next((lab for lab, units in self.spec["units"].items() if unit in units), None)
        return lab in self.labs and bool(self.gradebook.unit_passed(student, unit))

    # -- recording -----------------------------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and report.failed):
            lab, student = _lab_of(item), item.callspec.params["student"]
            points, cell = item.get_closest_marker("points"), item.get_closest_marker("cell")
            pending = self.pending[(student, lab)]
            pending["checks"].append({
                "unit": unit_of(item.originalname, self.spec["units"][lab]), "check": item.originalname,
                "label": check_label(item), "cell": cell.args[0] if cell else None,
                "points": float(points.args[0]) if points else 0.0,
                "hidden": item.get_closest_marker("hidden") is not None, "passed": report.passed,
                "rule": item.get_closest_marker("rule") is not None,
                "seconds": round(call.duration, 3), "cpu_seconds": round(self.cpu_spent(item), 3),
                "message": _message(call.excinfo) if report.failed else "",
            })
            pending["artifacts"] += [value for key, value in report.user_properties if key == "artifact"]
            pending["reviews"] += [value for key, value in report.user_properties if key == "review"]

    def record(self, student: str, lab: str, run: LabRun, summary: dict) -> None:
        pending = self.pending.pop((student, lab))
        units = run.code.get("units", {})
        provided = rules.provided_names(tuple(run.code.get("setup", ())))
        reviews = [f"{unit} uses {', '.join(found.escapes)}" for unit in self.spec["units"][lab]
                   if unit in units and (found := rules.facts(units[unit], provided, rules.policy(self.course))).escapes]
        reviews += [r for r in pending["reviews"] if r not in reviews]
        summary["output"] = _cap(summary["output"], 4 * WORKER_TEXT)
        facts = self.spec["students"][student]["labs"].get(lab, {})
        summary.update(sandbox=self.spec["sandbox"], submitted_at=facts.get("submitted_at"), due=facts.get("due"))
        kept = [(name, picture, value.numpy()) for name, picture, value in pending["artifacts"]]
        self.gradebook.record(student, lab, self.spec["students"][student]["fingerprints"][lab],
                              round(run.seconds(), 2), pending["checks"], summary, reviews,
                              kept, units, time.time())

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session) -> None:
        self.server.close()
        self.gradebook.close()


def _message(excinfo) -> str:
    if excinfo is None:
        return ""
    error = excinfo.value
    if isinstance(error, AssertionError):
        return _cap(str(error).split("\nassert ")[0].strip() or "the check failed", 3 * WORKER_TEXT)
    if excinfo.typename == "Failed":  # pytest.fail: our own words already
        return _cap(str(error), 3 * WORKER_TEXT)
    return _cap(f"the grader could not judge the reply ({excinfo.typename}: {error})")
