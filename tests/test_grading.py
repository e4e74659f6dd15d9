"""`autograder grade` against a hostile class.

One grading run (two jobs, as a TA would) over a class of built submissions: the reference, the
untouched release, correct variants written differently, attacks on the sandbox, broken files,
and one mutant per check. Each test then reads that run's results for the students it is about.
"""
from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import pytest

from autograder.course import nbgrader_meta
from autograder.grade import GRADEBOOK, grade
from autograder.gradebook import Gradebook
from autograder.sandbox import UID_BASE, Limits
from conftest import reference_code, unit_cell, write_student

LIMITS = Limits(check_seconds=25, lab_seconds=70, memory_bytes=3 * 2**30)
FULL = {"Linear": 15, "softmax": 15, "one_layer_net": 15, "train_online": 15, "template_update": 15,
        "train_minibatch": 25}


def code(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def with_reference(unit: str, before: str = "", after: str = "") -> str:
    """The reference cell of `unit` with lines before (at import) or after it."""
    return code(before) + reference_code(unit) + "\n" + code(after)


SOFTMAX_OK = "def softmax(x, dim=-1):\n    e = torch.exp(x - x.amax(dim=dim, keepdim=True))\n    return e / e.sum(dim=dim, keepdim=True)\n"

# ---- the class ---------------------------------------------------------------------------------
# student id -> (labs kept, unit code replaced, edit of the notebooks)
ATTACKS = {
    "exit_in_call": (["lab02"], {"softmax": "import sys\ndef softmax(x, dim=-1):\n    sys.exit(3)\n"}, None),
    "exit_at_import": (["lab05"], {"template_update": with_reference("template_update", "import sys\nsys.exit(1)")}, None),
    "os_exit_in_call": (["lab05"], {"template_update": "import os\ndef template_update(W, X, labels, lr):\n    os._exit(0)\n"}, None),
    "os_exit_at_import": (["lab02"], {"softmax": "import os\nos._exit(1)\n" + SOFTMAX_OK}, None),
    "infinite_trainer": (["lab04"], {"train_online": "def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):\n    while True:\n        pass\n"}, None),
    "sleep_at_import": (None, {"softmax": "import time\ntime.sleep(1000)\n" + SOFTMAX_OK}, None),
    "memory_hog": (["lab03"], {"one_layer_net": with_reference("one_layer_net", after="""
        _forward = one_layer_net.forward
        def _hog(self, x):
            hoard = [torch.ones(2**30, dtype=torch.uint8) for _ in range(6)]
            return _forward(self, x)
        one_layer_net.forward = _hog
        """)}, None),
    "fork_flood": (["lab02"], {"softmax": code("""
        import os, time
        def softmax(x, dim=-1):
            for _ in range(300):  # bounded: if the sandbox failed, the machine still survives
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
            e = torch.exp(x - x.amax(dim=dim, keepdim=True))
            return e / e.sum(dim=dim, keepdim=True)
        """)}, None),
    "kill_parent_and_group": (["lab03"], {"one_layer_net": with_reference("one_layer_net", after="""
        import os, signal
        for target in (lambda: os.kill(os.getppid(), 9), lambda: os.kill(-1, 9), lambda: os.killpg(0, 9)):
            try:
                target()
            except OSError:
                pass
        """)}, None),
    "forger": (["lab02"], {"softmax": code("""
        import os, glob
        def _forge():
            for cmdline in glob.glob("/proc/*/cmdline"):
                try:
                    args = open(cmdline, "rb").read().decode(errors="ignore").split("\\0")
                except OSError:
                    continue
                targets = [a.split("=", 1)[1] for a in args if a.startswith("--autograder-results=")]
                targets += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--out"]
                targets += [os.path.join(cmdline[:-7], "cwd", "grades.csv")]
                for t in targets:
                    for path in (t, os.path.join(t, "grades.csv"), os.path.join(t, "forger", "results.json")):
                        try:
                            with open(path, "w") as f:
                                f.write("FORGED")
                        except OSError:
                            pass
        def softmax(x, dim=-1):
            _forge()
            e = torch.exp(x - x.amax(dim=dim, keepdim=True))
            return e / e.sum(dim=dim, keepdim=True)
        """)}, None),
    "solution_thief": (["lab02"], {"softmax": code("""
        import glob, json, os, utils
        def softmax(x, dim=-1):
            for path in glob.glob(os.path.join(os.path.dirname(utils.__file__), "*", "softmax_exercise.ipynb")):
                cells = json.load(open(path))["cells"]
                for cell in cells:
                    if cell["metadata"].get("nbgrader", {}).get("grade_id") == "softmax":
                        exec("".join(cell["source"]), globals())
                        return globals()["softmax"](x, dim)
            raise RuntimeError("no solutions to steal")
        """)}, None),
    "monkeypatcher": (["lab02"], {"softmax": code("""
        import builtins, torch.testing
        torch.allclose = lambda *a, **k: True
        torch.equal = lambda *a, **k: True
        torch.testing.assert_close = lambda *a, **k: None
        builtins.isinstance = lambda *a: True
        def softmax(x, dim=-1):
            return x
        """)}, None),
    "identity_softmax": (["lab02"], {"softmax": "def softmax(x, dim=-1):\n    return x\n"}, None),
    "pickler": (["lab02"], {"softmax": code("""
        import os
        class Payload:
            def __reduce__(self):
                return (os.system, ("touch /tmp/autograder-pwned",))
        def softmax(x, dim=-1):
            return Payload()
        """)}, None),
    "bytes_pickle": (["lab02"], {"softmax": "import pickle\ndef softmax(x, dim=-1):\n    return pickle.dumps(x)\n"}, None),
    "liar_tensor": (["lab02"], {"softmax": code("""
        class Liar(torch.Tensor):
            def __eq__(self, other):
                return True
            def allclose(self, *a, **k):
                return True
        def softmax(x, dim=-1):
            return torch.zeros_like(x).as_subclass(Liar)
        """)}, None),
    "zeros_softmax": (["lab02"], {"softmax": "def softmax(x, dim=-1):\n    return torch.zeros_like(x)\n"}, None),
    "channel_garbage": (["lab02"], {"softmax": code("""
        import os, stat
        def softmax(x, dim=-1):
            for fd in range(3, 64):  # whatever socket it can find: the channel to the grader
                try:
                    if stat.S_ISSOCK(os.fstat(fd).st_mode):
                        os.write(fd, (12).to_bytes(8, "big") + b"not a reply!")
                except OSError:
                    pass
            return x
        """)}, None),
    "slow_drip": (["lab02"], {"softmax": code("""
        import os, stat, time
        for fd in range(3, 64):  # announce a huge reply on the channel, then trickle it
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.write(fd, (1 << 27).to_bytes(8, "big"))
                    while True:
                        os.write(fd, b"\\0")
                        time.sleep(0.5)
            except OSError:
                pass
        """) + SOFTMAX_OK}, None),
    "deep_folder": (["lab02"], {"softmax": code("""
        import os
        _top = os.getcwd()
        for _ in range(3000):
            os.mkdir("d")
            os.chdir("d")
        os.chdir(_top)
        """) + SOFTMAX_OK}, None),
    "print_flood": (["lab02"], {"softmax": code("""
        def softmax(x, dim=-1):
            print("x" * (200 * 2**20))
            e = torch.exp(x - x.amax(dim=dim, keepdim=True))
            return e / e.sum(dim=dim, keepdim=True)
        """)}, None),
}

VARIANTS = {
    "Linear": code("""
        class Linear(nn.Module):
            def __init__(self, in_features, out_features, bias=True):
                super().__init__()
                self.weight = nn.Parameter(torch.randn(out_features, in_features) * 0.01)
                self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
            def forward(self, x):
                y = torch.einsum("...i,oi->...o", x, self.weight)
                return y if self.bias is None else y + self.bias
        """),
    "softmax": code("""
        def softmax(x, dim=-1):
            return torch.exp(x - torch.logsumexp(x, dim=dim, keepdim=True))
        """),
    "one_layer_net": code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super(one_layer_net, self).__init__()
                self.mylayer = nn.Linear(input_size, output_size)
            def forward(self, x):
                s = self.mylayer(x)
                e = torch.exp(s - s.max(dim=-1, keepdim=True).values)
                return e / e.sum(dim=-1, keepdim=True)
        """),
    "train_online": code("""
        import random
        def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):
            x_all = train_data.view(train_data.shape[0], 784)
            for _ in range(n_iter):
                i = random.randint(0, len(x_all) - 1)
                p = net(x_all[i:i + 1])
                loss = -torch.log(p[0, train_label[i]])
                for w in net.parameters():
                    w.grad = None
                loss.backward()
                with torch.no_grad():
                    for w in net.parameters():
                        w -= lr * w.grad
            return None
        """),
    "template_update": code("""
        def template_update(W, X, labels, lr):
            S = torch.einsum("bd,cd->bc", X, W)
            P = torch.exp(S - torch.logsumexp(S, 1, keepdim=True))
            T = torch.zeros_like(P)
            T[torch.arange(len(labels)), labels] = 1
            return W + lr * torch.einsum("bc,bd->cd", T - P, X)
        """),
    "train_minibatch": code("""
        import numpy as np
        def train_minibatch(net, train_data, train_label, lr=0.01, bs=200, n_iter=5000):
            x_all = train_data.reshape(-1, 784)
            opt = torch.optim.SGD(net.parameters(), lr=lr)
            for _ in range(n_iter):
                idx = torch.from_numpy(np.random.choice(len(x_all), bs)).to(x_all.device)
                opt.zero_grad()
                loss = F.nll_loss(torch.log(net(x_all[idx])), train_label[idx])
                loss.backward()
                opt.step()
        """),
}


def _break(source: str, old: str, new: str) -> str:
    assert old in source, f"mutant anchor {old!r} not in the reference"
    return source.replace(old, new)


def mutant(unit: str, old: str, new: str) -> str:
    return _break(reference_code(unit), old, new)


# student id -> (unit, its code); each check must be failed by at least one of them
MUTANTS = {
    "m_linear_plain_tensor": ("Linear", mutant("Linear", "self.weight = nn.Parameter(", "self.weight = (")),
    "m_linear_no_bias_added": ("Linear", mutant("Linear", "y = y + self.bias", "y = y")),
    "m_linear_vector_as_batch": ("Linear", mutant("Linear", "y = x @ self.weight.T", "y = x.reshape(-1, self.weight.shape[1]) @ self.weight.T")),
    "m_linear_always_bias": ("Linear", mutant("Linear", 'self.register_parameter("bias", None)', "self.bias = nn.Parameter(torch.zeros(out_features))")),
    "m_linear_detached": ("Linear", mutant("Linear", "y = x @ self.weight.T", "y = x @ self.weight.detach().T")),
    "m_linear_uses_F_linear": ("Linear", mutant("Linear", "y = x @ self.weight.T", "y = F.linear(x, self.weight)")),
    "m_softmax_exp2": ("softmax", mutant("softmax", "torch.exp(shifted)", "torch.exp2(shifted)")),
    "m_softmax_dim0": ("softmax", mutant("softmax", "e.sum(dim=dim, keepdim=True)", "e.sum(dim=0, keepdim=True)")),
    "m_softmax_unstable": ("softmax", mutant("softmax", "x - x.amax(dim=dim, keepdim=True)", "x")),
    "m_softmax_in_place": ("softmax", mutant("softmax", "shifted = x - x.amax(dim=dim, keepdim=True)", "shifted = x.sub_(x.amax(dim=dim, keepdim=True))")),
    "m_softmax_detached": ("softmax", mutant("softmax", "return e / e.sum(dim=dim, keepdim=True)", "return (e / e.sum(dim=dim, keepdim=True)).detach()")),
    "m_softmax_torch": ("softmax", mutant("softmax", "return e / e.sum(dim=dim, keepdim=True)", "return torch.softmax(x, dim)")),
    "m_softmax_default_dim0": ("softmax", mutant("softmax", "def softmax(x, dim=-1):", "def softmax(x, dim=0):")),
    "m_net_two_layers": ("one_layer_net", mutant("one_layer_net", "self.mylayer = nn.Linear(input_size, output_size, bias=True)", "self.mylayer = nn.Linear(input_size, output_size, bias=True)\n        self.extra = nn.Linear(output_size, output_size)")),
    "m_net_no_softmax": ("one_layer_net", mutant("one_layer_net", "p = torch.softmax(scores, dim=-1)", "p = scores")),
    "m_net_softmax_dim0": ("one_layer_net", mutant("one_layer_net", "p = torch.softmax(scores, dim=-1)", "p = torch.softmax(scores, dim=0)")),
    "m_online_two_pictures": ("train_online", mutant("train_online", "x = data[idx].view(1, -1)", "x = data[idx:idx + 2].reshape(-1, 784)[:1].repeat(2, 1)")),
    "m_online_fixed_lr": ("train_online", mutant("train_online", "torch.optim.SGD(net.parameters(), lr=lr)", "torch.optim.SGD(net.parameters(), lr=0.01)")),
    "m_online_misaligned": ("train_online", mutant("train_online", "label = train_label[idx].view(1)", "label = train_label[(idx + 1) % n].view(1)")),
    "m_online_one_step": ("train_online", mutant("train_online", "for step in range(n_iter):", "for step in range(1):")),
    "m_update_mean": ("template_update", mutant("template_update", "return W + lr * E.T @ X", "return W + lr * E.T @ X / len(X)")),
    "m_update_in_place": ("template_update", mutant("template_update", "return W + lr * E.T @ X", "return W.add_(lr * E.T @ X)")),
    "m_update_autograd": ("template_update", code("""
        def template_update(W, X, labels, lr):
            W = W.detach().clone().requires_grad_(True)
            F.cross_entropy(X @ W.T, labels, reduction="sum").backward()
            return (W - lr * W.grad).detach()
        """)),
    "m_update_unstable": ("template_update", mutant("template_update", "P = torch.softmax(X @ W.T, dim=1)", "P = torch.exp(X @ W.T) / torch.exp(X @ W.T).sum(1, keepdim=True)")),
    "m_update_sign": ("template_update", mutant("template_update", "E = F.one_hot(labels, W.shape[0]).to(P.dtype) - P", "E = P - F.one_hot(labels, W.shape[0]).to(P.dtype)")),
    "m_minibatch_fixed_bs": ("train_minibatch", mutant("train_minibatch", "torch.randint(0, n, (bs,), device=data.device)", "torch.randint(0, n, (200,), device=data.device)")),
    "m_minibatch_fixed_lr": ("train_minibatch", mutant("train_minibatch", "torch.optim.SGD(net.parameters(), lr=lr)", "torch.optim.SGD(net.parameters(), lr=0.01)")),
    "m_minibatch_sum": ("train_minibatch", mutant("train_minibatch", "loss = F.nll_loss(torch.log(p), labels)", "loss = F.nll_loss(torch.log(p), labels, reduction='sum')")),
    "m_minibatch_misaligned": ("train_minibatch", mutant("train_minibatch", "labels = train_label[indices]", "labels = train_label[(indices + 1) % n]")),
    "m_minibatch_one_step": ("train_minibatch", mutant("train_minibatch", "for step in range(n_iter):", "for step in range(1):")),
}


def _drop_metadata(unit: str):
    def edit(lab, nb):
        if any(nbgrader_meta(c).get("grade_id") == unit for c in nb.cells):
            del unit_cell(nb, unit).metadata["nbgrader"]
    return edit


def _append_cell(unit: str, source: str):
    def edit(lab, nb):
        if any(nbgrader_meta(c).get("grade_id") == unit for c in nb.cells):
            import nbformat
            nb.cells.append(nbformat.v4.new_code_cell(source))
    return edit


NETWORK_PROBE = code("""
    import socket
    def softmax(x, dim=-1):
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=2).sendall(b"leaked")
        except OSError:
            pass
        return x
    """)


@pytest.fixture(scope="module")
def listener():
    """A TCP server on the loopback: a sandboxed worker must not reach it."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    yield server
    server.close()


@pytest.fixture(scope="module")
def graded(tmp_path_factory, datasets, course, listener):
    root = tmp_path_factory.mktemp("class")
    write_student(root, "network", ["lab02"], {"softmax": NETWORK_PROBE.replace("PORT", str(listener.getsockname()[1]))})
    write_student(root, "reference")
    write_student(root, "untouched_release", tree="release")
    write_student(root, "variants", code=VARIANTS)
    for student, (labs, replaced, edit) in ATTACKS.items():
        write_student(root, student, labs, replaced, edit=edit)
    for student, (unit, source) in MUTANTS.items():
        lab = {"Linear": "lab01", "softmax": "lab02", "one_layer_net": "lab03", "train_online": "lab04"}.get(unit, "lab05")
        write_student(root, student, [lab], {unit: source})
    write_student(root, "lost_metadata", ["lab01", "lab02", "lab03"], edit=_drop_metadata("softmax"))
    write_student(root, "duplicate_later_right", ["lab02"], {"softmax": "def softmax(x, dim=-1):\n    return x\n"},
                  edit=_append_cell("softmax", SOFTMAX_OK))
    write_student(root, "duplicate_later_wrong", ["lab02"], edit=_append_cell("softmax", "def softmax(x, dim=-1):\n    return x\n"))
    invalid = write_student(root, "invalid_json", ["lab01", "lab02", "lab03"])
    (invalid / "vanilla_nn_exercise.ipynb").write_text('{"cells": [ this is not json')
    write_student(root, "missing_lab01", ["lab02", "lab03"])
    out = tmp_path_factory.mktemp("graded")
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AUTOGRADER_DATA", str(datasets / "cache"))
        env.setenv("AUTOGRADER_IDX_PATH", str(datasets / "idx"))
        env.setenv("AUTOGRADER_OFFLINE", "1")
        results = grade(course, [root], out, jobs=2, device="cpu", limits=LIMITS)
    return {r.student: r for r in results}, out, time.monotonic() - started


def units(graded, student: str) -> dict[str, float]:
    return graded[0][student].units


def messages(graded, student: str) -> str:
    return " | ".join(c["message"] for c in graded[0][student].checks if not c["passed"])


# ---- the reference and the release ---------------------------------------------------------

def test_reference_solutions_get_full_marks(graded):
    result = graded[0]["reference"]
    assert result.units == FULL and result.total == 100 and result.status == "ok", messages(graded, "reference")


def test_untouched_release_gets_zero_without_a_grader_fault(graded):
    result = graded[0]["untouched_release"]
    assert result.total == 0 and result.status == "ok"
    assert all("NotImplementedError" in c["message"] for c in result.checks), messages(graded, "untouched_release")


def test_correct_variants_written_differently_get_full_marks(graded):
    assert units(graded, "variants") == FULL, messages(graded, "variants")


# ---- files written ---------------------------------------------------------------------------

def test_grades_csv_has_one_row_per_student_with_the_spec_columns(graded):
    results, out, _ = graded
    lines = (out / "grades.csv").read_text().splitlines()
    assert lines[0] == "student,Linear,softmax,one_layer_net,train_online,template_update,train_minibatch,total,max_total,status"
    assert sorted(line.split(",")[0] for line in lines[1:]) == sorted(results)
    row = next(line for line in lines if line.startswith("reference,"))
    assert row == "reference,15,15,15,15,15,25,100,100,ok"


def test_results_json_is_gradescope_format_and_hides_hidden_checks(graded):
    results, out, _ = graded
    data = json.loads((out / "m_softmax_torch" / "results.json").read_text())
    assert data["score"] == results["m_softmax_torch"].total
    assert {"score", "execution_time", "tests"} <= set(data)
    hidden = [t for t in data["tests"] if t["visibility"] == "after_published"]
    assert hidden and all(t["visibility"] in ("visible", "after_published") for t in data["tests"])
    assert all(t["name"].split(":")[0] in FULL for t in data["tests"])
    failed_hidden = [t for t in hidden if t["status"] == "failed"]
    assert failed_hidden and all("def test_" not in t["output"] and "torch.softmax(x" not in t["output"]
                                 for t in failed_hidden)
    assert sum(t["max_score"] for t in data["tests"]) == 100


# ---- attacks ----------------------------------------------------------------------------------

def test_sys_exit_in_a_call_fails_only_that_unit(graded):
    assert units(graded, "exit_in_call")["softmax"] == 0 and "SystemExit" in messages(graded, "exit_in_call")


def test_sys_exit_at_import_fails_only_its_unit(graded):
    got = units(graded, "exit_at_import")
    assert got["template_update"] == 0 and got["train_minibatch"] == 25, messages(graded, "exit_at_import")


def test_os_exit_in_a_call_costs_only_its_unit_of_the_lab(graded):
    got = units(graded, "os_exit_in_call")
    assert got["template_update"] == 0 and got["train_minibatch"] == 25, messages(graded, "os_exit_in_call")
    assert "exited" in messages(graded, "os_exit_in_call")


def test_os_exit_at_import_fails_that_lab(graded):
    assert units(graded, "os_exit_at_import")["softmax"] == 0
    assert "lab02_softmax" in graded[0]["os_exit_at_import"].status


def test_hanging_trainer_fails_only_its_unit_within_the_lab_time(graded):
    assert units(graded, "infinite_trainer")["train_online"] == 0
    assert "did not finish" in messages(graded, "infinite_trainer")


def test_sleep_at_import_costs_only_its_own_lab(graded):
    got = units(graded, "sleep_at_import")
    assert got == {**FULL, "softmax": 0}, messages(graded, "sleep_at_import")


def test_memory_hog_is_stopped_by_the_limit(graded):
    assert units(graded, "memory_hog")["one_layer_net"] < 15  # its structure check never calls forward
    assert "memory limit" in messages(graded, "memory_hog")


def test_fork_flood_is_contained_and_cleaned_up(graded):
    assert units(graded, "fork_flood")["softmax"] == 0
    leftover = [p for p in os.listdir("/proc") if p.isdigit() and _uid(p) >= UID_BASE]
    assert leftover == [], "worker processes outlived grading"


def _uid(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
    except (OSError, StopIteration):
        return -1


def test_killing_parent_or_group_harms_no_one_else(graded):
    assert units(graded, "kill_parent_and_group")["one_layer_net"] < 15
    assert graded[0]["reference"].total == 100


@pytest.mark.skipif(os.geteuid() != 0, reason="workers drop to their own uid only when the grader runs as root")
def test_forged_files_do_not_survive(graded):
    results, out, _ = graded
    assert units(graded, "forger")["softmax"] == 15  # honest marks for a correct softmax, nothing more
    for path in out.rglob("*"):
        assert not path.is_file() or "FORGED" not in path.read_text(errors="ignore"), path
    assert json.loads((out / "forger" / "results.json").read_text())["score"] == 15


@pytest.mark.skipif(os.geteuid() != 0, reason="workers see an empty course and output only under root")
def test_workers_cannot_read_the_solutions(graded):
    assert units(graded, "solution_thief")["softmax"] <= 1  # only x-left-unchanged, which never reads the result
    assert "no solutions to steal" in messages(graded, "solution_thief")


@pytest.mark.skipif(os.geteuid() != 0, reason="workers get a network namespace of their own only under root")
def test_workers_have_no_network(graded, listener):
    assert units(graded, "network")["softmax"] < 15
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_monkeypatching_torch_and_builtins_gains_nothing(graded):
    assert units(graded, "monkeypatcher")["softmax"] <= units(graded, "identity_softmax")["softmax"] < 15


def test_pickle_payloads_never_cross(graded):
    # Only the check that never reads the result (x left unchanged, 1 point) can pass.
    assert units(graded, "pickler")["softmax"] <= 1 and units(graded, "bytes_pickle")["softmax"] <= 1
    assert "cannot send" in messages(graded, "pickler") and "cannot send a bytes" in messages(graded, "bytes_pickle")
    assert not Path("/tmp/autograder-pwned").exists()


def test_tensor_subclass_that_equals_anything_is_a_plain_tensor(graded):
    assert units(graded, "liar_tensor")["softmax"] == units(graded, "zeros_softmax")["softmax"] < 15


def test_garbage_on_the_channel_fails_the_check_that_read_it(graded):
    assert units(graded, "channel_garbage")["softmax"] < 15
    assert "answered garbage" in messages(graded, "channel_garbage")


def test_a_reply_trickled_forever_times_out(graded):
    assert units(graded, "slow_drip")["softmax"] == 0
    assert "did not finish" in messages(graded, "slow_drip")


def test_a_deep_folder_tree_loses_no_row(graded):
    assert units(graded, "deep_folder")["softmax"] == 15


def test_print_flood_is_dropped_and_grading_goes_on(graded):
    assert units(graded, "print_flood")["softmax"] == 15
    book = Gradebook(graded[1] / GRADEBOOK)
    output = next(lab["output"] for lab in book.labs("print_flood") if lab["lab"] == "lab02_softmax")
    book.close()
    assert len(output) < 200_000 and "more bytes of output dropped" in output


# ---- files and cells --------------------------------------------------------------------------

def test_invalid_notebook_costs_only_its_lab(graded):
    got = units(graded, "invalid_json")
    assert got["one_layer_net"] == 0 and got["Linear"] == 15 and got["softmax"] == 15
    assert "not a valid notebook" in graded[0]["invalid_json"].status


def test_missing_notebook_is_reported(graded):
    got = units(graded, "missing_lab01")
    assert got["Linear"] == 0 and got["softmax"] == 15
    assert "no notebook for lab01_linear_module" in graded[0]["missing_lab01"].status


def test_cell_without_metadata_is_found_by_its_definition(graded):
    assert units(graded, "lost_metadata")["softmax"] == 15


def test_the_later_of_two_cells_is_graded(graded):
    assert units(graded, "duplicate_later_right")["softmax"] == 15
    assert units(graded, "duplicate_later_wrong")["softmax"] < 15


# ---- every check can fail ---------------------------------------------------------------------

def test_every_check_is_failed_by_some_mutant(graded):
    results = graded[0]
    checks = {c["check"] for c in results["reference"].checks}
    failed = {c["check"] for s in MUTANTS for c in results[s].checks if not c["passed"]}
    assert checks - failed == set()


def test_each_mutant_loses_points_only_on_its_unit(graded):
    for student, (unit, _) in MUTANTS.items():
        got = units(graded, student)
        assert got[unit] < FULL[unit], f"{student} kept full marks on {unit}"
        if unit in ("template_update", "train_minibatch"):  # the other unit of lab 05 is untouched
            other = ({"template_update", "train_minibatch"} - {unit}).pop()
            assert got[other] == FULL[other], f"{student} lost points on {other}: {messages(graded, student)}"
