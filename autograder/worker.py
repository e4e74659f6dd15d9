"""Inside the sandbox: the pre-warmed server and the dispatcher each worker runs.

`python -I -m autograder.worker CONTROL_FD` is started by the grader (sandbox.py). The server
imports torch, the course helpers and the training set once, then forks one worker per request,
confined as the grader decided (confine.py). A worker holds the course's setup cells, the
student's unit cells, the training set and this dispatcher, nothing else: no check, no
reference solution, no expected value, no test set. It answers Call messages (messages.py) by
calling what the cells define on the values the grader sent, and sends back what came out.
Nothing here judges anything, and the student can rewrite all of it: the grader trusts only the
values it receives, which it judges as if the student had typed them in.
"""
from __future__ import annotations

import os
import random
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import confine, messages, reap
from .messages import Build, Call, Confined, Load, Loaded, ModuleState, Outcome, SetupDone, TrainingSet

# Taken now, before student code can replace what these names point to.
_MODULE = torch.nn.Module
_NAMED_PARAMETERS, _NAMED_BUFFERS = torch.nn.Module.named_parameters, torch.nn.Module.named_buffers
_LOAD_STATE, _MODULE_TO = torch.nn.Module.load_state_dict, torch.nn.Module.to
_TENSOR, _DETACH, _CLONE = torch.Tensor, torch.Tensor.detach, torch.Tensor.clone
_isinstance, _exec, _compile = isinstance, exec, compile


def _error(e: BaseException) -> str:
    """What a student needs: the exception, and where in their cells it was raised."""
    text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith("<")]
    where = " <- ".join(f"{f.filename[1:-1]} line {f.lineno}" for f in reversed(frames[-3:]))
    return (text[:1500] + (f" (at {where})" if where else ""))[:2000]


# ---- the dispatcher --------------------------------------------------------------------------

class Dispatcher:
    """One worker's namespace and what it can be asked to do with it."""

    def __init__(self, data: dict[str, torch.Tensor], device: str):
        self.data, self.device = data, device
        self.namespace: dict[str, Any] = {"__name__": "__main__"}
        self.defined: dict[str, Any] = {}  # what the grader may call: the provided cells' names and the units

    def setup(self, cells: tuple[str, ...]) -> SetupDone:
        """The provided cells, then a snapshot of what they define."""
        for index, code in enumerate(cells):
            try:
                _exec(_compile(code, f"<setup cell {index}>", "exec"), self.namespace)
            except BaseException as e:  # the course's own cell failing is a grader fault, said plainly
                return SetupDone(_error(e))
        self.defined = dict(self.namespace)
        return SetupDone()

    def load(self, units: dict[str, str]) -> Loaded:
        """Each unit's cell, in order; the grader calls a unit as its own cell left it, not as a
        later cell may have rebound its name."""
        errors: dict[str, str | None] = {}
        for unit, code in units.items():
            try:
                _exec(_compile(code, f"<{unit} cell>", "exec"), self.namespace)
                errors[unit] = None if unit in self.namespace else f"NameError: the cell does not define {unit}"
                if unit in self.namespace:
                    self.defined[unit] = self.namespace[unit]
            except BaseException as e:  # SystemExit and KeyboardInterrupt from student code too
                errors[unit] = _error(e)
        return Loaded(errors=errors)

    def _lookup(self, name: str) -> Any:
        if name not in self.defined:
            raise NameError(f"{name} is not defined by the notebook's cells")
        return self.defined[name]

    def _build(self, spec: Build, on_device: bool) -> Any:
        obj = self._lookup(spec.cls)(*self._values(spec.args, on_device), **self._values(spec.kwargs, on_device))
        if spec.state is not None:
            _LOAD_STATE(obj, {k: v for k, v in spec.state.items()})
        return _MODULE_TO(obj, self.device) if on_device and _isinstance(obj, _MODULE) else obj

    def _values(self, value: Any, on_device: bool) -> Any:
        if _isinstance(value, Build):
            return self._build(value, on_device)
        if _isinstance(value, TrainingSet):
            data = self.data[value.part]
            return data.to(self.device) if on_device else data
        if _isinstance(value, _TENSOR):
            return value.to(self.device) if on_device else value
        if _isinstance(value, dict):
            return {k: self._values(v, on_device) for k, v in value.items()}
        if _isinstance(value, tuple):
            return [self._values(v, on_device) for v in value]
        return value

    def call(self, call: Call) -> Outcome:
        try:
            if call.seed is not None:
                torch.manual_seed(call.seed)
                random.seed(call.seed)
                np.random.seed(call.seed)
            args = [self._values(a, call.on_device) for a in call.args]
            for i in call.requires_grad:
                args[i] = _DETACH(args[i]).requires_grad_(True)
            kwargs = self._values(call.kwargs, call.on_device)
            target = self._build(call.target, call.on_device) if _isinstance(call.target, Build) \
                else self._lookup(call.target)
            with torch.set_grad_enabled(call.grad):
                value = target(*args, **kwargs)
            if call.backward is not None:
                (value * call.backward.to(value.device)).sum().backward()
            grads = {f"args[{i}]": args[i].grad for i in call.requires_grad}
            for key, obj in (("target", target), *((f"args[{i}]", a) for i, a in enumerate(args))):
                if _isinstance(obj, _MODULE) and call.backward is not None:
                    grads.update({f"{key}.{n}": p.grad for n, p in _NAMED_PARAMETERS(obj)})
            # Not the training set back: hundreds of MB copied, sent and decoded for nothing.
            sent = [None if _isinstance(a, TrainingSet) else _report(v) for a, v in zip(call.args, args)]
            return Outcome(value=_report(value), args=tuple(sent), grads=_report(grads))
        except BaseException as e:  # whatever the cells raise is the student's answer
            return Outcome(error=_error(e))


def _report(value: Any) -> Any:
    """What can travel of a value: tensors as they are now, modules as their state."""
    if _isinstance(value, _TENSOR):
        return _CLONE(_DETACH(value))
    if _isinstance(value, _MODULE):
        return ModuleState(parameters={n: _report(p) for n, p in _NAMED_PARAMETERS(value)},
                           buffers={n: _report(b) for n, b in _NAMED_BUFFERS(value)})
    if _isinstance(value, dict):
        return {str(k): _report(v) for k, v in value.items()}
    if _isinstance(value, (list, tuple)):
        return [_report(v) for v in value]
    if value is None or _isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"it returned a {type(value).__name__}, which is not a tensor, a number or a module")


def serve_worker(channel: socket.socket, error: str | None, data: dict[str, torch.Tensor], device: str,
                 threads: int) -> None:
    """A confined worker: say so, load, then answer calls until the grader closes the channel."""
    messages.send(channel, Confined(error))
    if error is not None:  # the sandbox is not what it should be: run nothing
        return
    load = messages.expect(messages.receive(channel, (Load,)), Load)
    torch.set_num_threads(threads)
    for name in [n for n in sys.modules if n == "autograder" or n.startswith("autograder.")]:
        del sys.modules[name]  # the grader's package is not the student's to import
    # What the cells print goes to the grader as it comes, not into a buffer lost at exit.
    sys.stdout = out = open(1, "w", buffering=1, closefd=False, errors="replace")
    sys.stderr = err = open(2, "w", buffering=1, closefd=False, errors="replace")
    dispatcher = Dispatcher(data, device)
    send, receive, frame = channel.sendall, messages.receive, messages.frame
    done = dispatcher.setup(load.setup)
    send(frame(done))  # before any student cell runs, so the grader can believe it
    if done.error is not None:
        return
    reply = frame(dispatcher.load(load.units))
    while True:
        for stream in (out, err):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        send(reply)
        try:
            call = receive(channel, (Call, Build, TrainingSet))
        except messages.ChannelError:
            return
        try:
            reply = frame(dispatcher.call(messages.expect(call, Call)))
        except (TypeError, ValueError) as e:  # a value that cannot travel is the student's error
            reply = frame(Outcome(error=f"the result cannot be sent to the grader: {e}"))


# ---- the server ------------------------------------------------------------------------------

def _warm_up() -> None:
    """Import now what student code commonly loads, so that every worker inherits it."""
    import importlib

    for name in ("collections", "copy", "dataclasses", "functools", "itertools", "math", "numbers", "operator",
                 "random", "re", "statistics", "string", "time", "typing", "numpy.random", "torch.nn.init",
                 "torch.utils.data", "torch.distributions", "torch.autograd.functional", "torch.func",
                 "torch.testing", "torch.special", "tqdm", "tqdm.auto", "matplotlib", "matplotlib.pyplot"):
        importlib.import_module(name)
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


def _settings(start: messages.Start) -> confine.Settings:
    level = confine.Level(start.level, start.userns, start.landlock)
    scratch = None
    if level.name != "namespaces":
        import tempfile

        scratch = tempfile.mkdtemp(prefix="autograder-workers-")
        os.chmod(scratch, 0o711)
    plan = confine.Plan(read=tuple(start.read), links=dict(start.links), devices=tuple(start.devices))
    return confine.Settings(level, plan, start.file_bytes, start.cpu_seconds, start.processes, start.scratch_bytes,
                            start.threads, scratch)


def _load_data(start: messages.Start, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The training images with the grader's labels. The provided cells may load the withheld
    split by name; in a worker that name gives training pictures: the real ones stay with the
    grader."""
    helpers = sys.modules["utils"]
    images, _ = helpers.load(start.dataset, start.train_split)
    labels = labels.long()
    helpers.preload(start.dataset, start.train_split, images, labels)
    helpers.preload(start.dataset, start.withheld_split, images[-10000:], labels[-10000:])
    return {"images": images, "labels": labels}


def _start_janitor(settings: confine.Settings) -> int:
    """A child that cleans up after every worker once the server is gone: at "uid" and "none"
    their processes (at "namespaces" they die with their PID namespace), their folders and cgroups."""
    read, write = os.pipe()
    if os.fork() == 0:
        os.close(write)
        try:
            reap.janitor(read)
            reap.remove_tree(settings.scratch_parent)
        finally:
            os._exit(0)
    os.close(read)
    return write


def serve(control: socket.socket) -> None:
    """Import what every worker inherits, then answer the grader: LoadData (once, for labs that
    train), and Spawn, a worker each."""
    from .course import import_helpers

    torch.set_num_threads(1)  # no OpenMP pool in the parent: forked children build their own
    start = messages.expect(messages.decode(control.recv(1 << 20), (messages.Start,)), messages.Start)
    try:
        import_helpers(Path(start.helpers))
        _warm_up()
        settings = _settings(start)
        uids = confine.Uids.claim() if settings.level.name != "none" else None
    except Exception as e:  # a missing course helper, no uids left: the grader says so
        control.send(messages.encode(messages.Ready(error=f"{type(e).__name__}: {e}")))
        return
    started_in = os.getcwd()
    os.chdir("/")
    os.rmdir(started_in)  # the empty folder the grader started it in
    janitor = _start_janitor(settings)  # it holds the uids' lock until every worker is cleaned up
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    control.send(messages.encode(messages.Ready()))
    data: dict[str, torch.Tensor] = {}
    while True:
        try:
            packet, fds, _, _ = socket.recv_fds(control, 1 << 20, 2)
        except OSError:
            return
        if not packet:
            return
        request = messages.decode(packet, (messages.Spawn, messages.LoadData))
        if isinstance(request, messages.LoadData):
            try:
                data = _load_data(start, request.labels)
                control.send(messages.encode(messages.Ready()))
            except Exception as e:  # a missing dataset: the grader says so
                control.send(messages.encode(messages.Ready(error=f"{type(e).__name__}: {e}")))
            continue
        spawn = messages.expect(request, messages.Spawn)
        channel, output = fds

        def run(error: str | None) -> None:
            serve_worker(socket.socket(fileno=channel), error, data, start.device, settings.threads)

        uid = uids.next() if uids is not None else None
        pid, uid = confine.fork_worker(settings, uid, run, keep=(channel, output), output=output, cgroup=spawn.cgroup)
        folder = confine.worker_folder(settings, pid)
        cgroups = ",".join(str(Path(procs).parent) for procs in spawn.cgroup) or "-"
        os.write(janitor, f"{settings.level.name} {pid} {uid if uid is not None else '-'} {cgroups} "
                          f"{folder or '-'}\n".encode())
        for fd in fds:
            os.close(fd)
        control.send(messages.encode(messages.Spawned(pid=pid, uid=uid, folder=folder)))


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
