"""The worker side of grading: a pre-warmed server that forks one sandboxed worker per lab.

`python -m autograder.worker COURSE_ROOT CONTROL_FD` is started by the grader (sandbox.py). It
imports torch, the course helpers, the training data and the check modules' probes once; each
request on the control socket carries two file descriptors (the worker's channel and the write
end of its output pipe) and the limits, and the server forks. The child confines itself (own
session, empty folder, scrubbed environment, rlimits, an unprivileged uid and no network when
run as root), runs the assignment's setup cells and the student's unit cells, then answers probe
requests on its channel with data only. Nothing here judges anything: the grader does.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import resource
import signal
import socket
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from . import channel
from .probes import REGISTRY, ProbeContext
from .sandbox import UID_BASE

_CLONE_NEWNET, _CLONE_NEWNS = 0x40000000, 0x00020000
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 1, 2, 4, 8, 1 << 14, 1 << 18
SCRATCH = {"/tmp": "size=256m,mode=1777", "/var/tmp": "size=16m,mode=1777", "/dev/shm": "size=64m,mode=1777"}


def load_probes(checks: Path) -> dict[str, Any]:
    """Every @probe function of the check modules (and what they import), by '<module stem>:<name>'."""
    for path in sorted(checks.glob("lab*.py")):
        spec = importlib.util.spec_from_file_location(f"autograder_checks_{path.stem}", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return dict(REGISTRY)


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc, source: bytes, target: str, flags: int, options: str) -> str | None:
    if libc.mount(source, target.encode(), b"tmpfs", flags, options.encode()) != 0:
        return f"{target}: {os.strerror(ctypes.get_errno())}"
    return None


def _seclude(hide: list[str]) -> list[str]:
    """As root, before dropping privileges: a mount namespace of its own in which the course's
    solutions and checks, the submissions and the output are empty read-only folders and the
    scratch folders are small private tmpfs; no network. What cannot be done is returned."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return [f"no mount namespace: {os.strerror(ctypes.get_errno())}"]
    problems = [_mount(libc, b"tmpfs", path, _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=4k,mode=000")
                for path in hide if os.path.isdir(path)]
    problems += [_mount(libc, b"tmpfs", path, _MS_NOSUID | _MS_NODEV, options)
                 for path, options in SCRATCH.items() if os.path.isdir(path)]
    if libc.unshare(_CLONE_NEWNET) != 0:
        problems.append(f"no network namespace: {os.strerror(ctypes.get_errno())}")
    return [p for p in problems if p]


def _confine(limits: dict, folder: str, uid: int | None, hide: list[str]) -> list[str]:
    """Confine this process before any student code runs; returns what could not be done."""
    libc = ctypes.CDLL(None, use_errno=True)
    os.setsid()
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    problems = []
    if uid is not None:  # root: a uid of its own, so it can signal nothing else and write nothing of ours
        problems = _seclude(hide)
        folder = tempfile.mkdtemp(dir="/tmp")  # on its private /tmp, gone with it
        os.chown(folder, uid, uid)
    os.chdir(folder)
    os.environ.clear()
    os.environ.update({"HOME": folder, "TMPDIR": folder, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
                       "OMP_NUM_THREADS": str(limits["threads"]), "MPLBACKEND": "Agg"})
    for name, value in (("RLIMIT_FSIZE", limits["file_bytes"]), ("RLIMIT_CORE", 0),
                        ("RLIMIT_NOFILE", 256), ("RLIMIT_CPU", limits["cpu_seconds"])):
        resource.setrlimit(getattr(resource, name), (value, value))
    if uid is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"], limits["processes"]))
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return problems


def _error(e: BaseException) -> dict:
    lines = traceback.format_exception(type(e), e, e.__traceback__)
    # Only the student's frames help them; ours are noise.
    student = [line for line in lines if 'File "<' in line or not line.startswith("  File")]
    return {"error": f"{type(e).__name__}: {e}"[:2000], "traceback": "".join(student)[-4000:]}


def _run_program(program: dict) -> tuple[dict, dict]:
    namespace: dict = {"__name__": "__main__"}
    for index, code in enumerate(program["setup"]):
        try:
            exec(compile(code, f"<setup cell {index}>", "exec"), namespace)
        except BaseException as e:  # the course's own cell failing is a grader fault, said plainly
            return namespace, {"setup_error": _error(e)["error"]}
    loaded = {}
    for unit, code in program["units"].items():
        try:
            exec(compile(code, f"<{unit} cell>", "exec"), namespace)
            loaded[unit] = None
        except BaseException as e:  # SystemExit and KeyboardInterrupt from student code too
            loaded[unit] = _error(e)["error"]
    return namespace, {"loaded": loaded}


def _worker(chan: socket.socket, request: dict, probes: dict, data: dict) -> None:
    uid = UID_BASE + os.getpid() if request["own_uid"] else None
    problems = _confine(request["limits"], request["folder"], uid, request["hide"])
    import torch

    torch.set_num_threads(request["limits"]["threads"])
    program = channel.receive(chan)
    if problems:  # the sandbox is not what it should be: grade nothing rather than grade unsafely
        channel.send(chan, {"sandbox_error": "; ".join(problems)})
        return
    namespace, status = _run_program(program)
    channel.send(chan, status)
    context = ProbeContext(namespace, data, request["device"])
    while True:
        try:
            call = channel.receive(chan)
        except channel.ChannelError:
            return
        probe = probes.get(call.get("probe"))
        try:
            if probe is None:
                raise LookupError(f"no probe {call.get('probe')!r}")
            reply = {"value": probe(context, **call.get("args", {}))}
            data_reply = channel.encode(reply)  # a value that cannot travel is the probe's error
        except BaseException as e:
            data_reply = channel.encode(_error(e))
        chan.sendall(len(data_reply).to_bytes(8, "big") + data_reply)


def _warm_up() -> None:
    """Import now what student code and probes load lazily: every worker inherits it, and an
    unprivileged worker may not be able to read the Python installation (e.g. under /root)."""
    import importlib

    for name in ("collections", "copy", "dataclasses", "functools", "itertools", "math", "numbers", "operator",
                 "random", "re", "statistics", "string", "time", "typing", "numpy", "numpy.random",
                 "torch.nn.init", "torch.utils.data", "torch.distributions", "torch.autograd.functional",
                 "torch.func", "torch.testing", "torch.special"):
        importlib.import_module(name)
    import torch
    import torch.nn.functional as F

    net = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.rand(2, 4), torch.tensor([0, 2])
    loss = F.nll_loss(torch.log(torch.softmax(net(x), 1)), y) + F.cross_entropy(net(x), y)
    loss = loss + F.one_hot(y, 3).float().sum() * 0 + torch.log_softmax(net(x), 1).sum() * 0
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    torch.optim.Adam(net.parameters()).step()


def serve(course_root: Path, control: socket.socket) -> None:
    import torch

    torch.set_num_threads(1)  # no OpenMP pool in the parent: forked children build their own
    from .course import Course

    course = Course(course_root)
    utils = course.helpers()
    images, labels = utils.load("fashion-mnist", "train")
    data = {"train_data": images, "train_label": labels}
    probes = load_probes(course.checks)
    _warm_up()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    control.send(channel.encode({"ready": True}))
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 16, 2)
        except OSError:
            return
        if not message:
            return
        request = channel.decode(message)
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                control.close()
                chan = socket.socket(fileno=fds[0])
                os.dup2(fds[1], 1)
                os.dup2(fds[1], 2)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.closerange(3, fds[0])
                os.closerange(fds[0] + 1, 1 << 16)
                _worker(chan, request, probes, data)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        for fd in fds:
            os.close(fd)
        control.send(channel.encode({"pid": pid}))


if __name__ == "__main__":
    serve(Path(sys.argv[1]), socket.socket(fileno=int(sys.argv[2])))
