"""The grader's handles on the warm server and on each worker it forks (worker.py is the inside).

The grader never runs student code. It starts one server (`python -I` from an empty folder) that
imports torch and the course helpers; each lab submission gets a worker forked from it in
milliseconds and confined at the level chosen at start (sandbox.py, confine.py). The grader
keeps the limits a worker cannot lift: CPU seconds per call, wall-clock per call and per lab,
resident memory and process count summed over every process of the worker, what it writes to
disk, and the flood of its output (only the head is kept).
"""
from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import confine, messages, reap
from .cgroups import Cgroup, Cgroups
from .confine import Level
from .course import HELPERS, Course
from .messages import Call, Load
from .sandbox import Limits, plan, settings


# ---- a worker --------------------------------------------------------------------------------

class WorkerFailure(Exception):
    """The worker could not answer: the message says why in words a student understands."""


# How many times its wall limit a call may take, waits for a CPU included, however busy the machine.
BACKSTOP = 10


@dataclass(frozen=True)
class _Call:
    cpu: float  # the worker's CPU seconds when it began
    cpu_limit: float
    wall_limit: float
    out_of_time: str
    started: float
    stalled: float  # the worker's stalled seconds when it began
    thread: int  # the grader's thread that waits for the answer


class Worker:
    """One lab submission's process tree: load its code, then answer calls, each under limits."""

    def __init__(self, level: Level, spawned: messages.Spawned, sock: socket.socket, output_fd: int,
                 limits: Limits, cgroup: Cgroup | None):
        self.level, self.sock, self.limits, self.cgroup = level, sock, limits, cgroup
        self.pid, self.uid, self.folder = spawned.pid, spawned.uid, spawned.folder
        self.reason: str | None = None  # why it was stopped, once it was
        self.stopped_for_time = False
        self.output, self.output_dropped = bytearray(), 0
        self.cpu_used = 0.0  # by the last call
        self.held = 0.0  # seconds it took to answer, all calls together, not counting waits for a CPU
        self._stalled = 0.0  # seconds it was ready to run but waited for a CPU the machine was busy with
        self._delays: dict[int, int] = {}
        self._drainer: int | None = None  # the grader's thread that reads its output
        self._looked = time.monotonic()
        self._looking = threading.Lock()
        self._call: _Call | None = None
        self._stop = threading.Event()
        threading.Thread(target=self._drain, args=(output_fd,), daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _drain(self, fd: int) -> None:
        """Keep what the worker prints up to the output limit and drop the rest. A worker blocked
        on a full pipe waits for this thread, so its waits for a CPU count as the grader's, and
        a flood passes through a large pipe and, past the limit, to /dev/null by splice, never
        copied here."""
        self._drainer = threading.get_native_id()
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass  # a smaller pipe only costs more wake-ups
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while len(self.output) < self.limits.output_bytes:
                chunk = pipe.read(1 << 20)
                if not chunk:
                    return
                room = self.limits.output_bytes - len(self.output)
                self.output += chunk[:room]
                self.output_dropped += len(chunk) - len(chunk[:room])
            with open(os.devnull, "wb") as sink:
                try:
                    while moved := os.splice(fd, sink.fileno(), 1 << 20):
                        self.output_dropped += moved
                except OSError:
                    while chunk := pipe.read(1 << 20):
                        self.output_dropped += len(chunk)

    def _usage(self) -> tuple[float, int, list[int]]:
        """(CPU seconds, memory bytes, its processes): from its cgroup where it has one (where the
        kernel counts everything), else summed over its processes (RSS, CPU of the living and of
        the children they reaped)."""
        if self.cgroup is not None:
            try:
                cpu, memory, killed = self.cgroup.usage()
                if killed:
                    self.kill(f"used more than the memory limit of {self.limits.memory_bytes / 2**30:.1f} GiB")
                return cpu, memory, self.cgroup.pids()
            except (OSError, ValueError):
                pass  # removed meanwhile: the worker is gone
        procs = reap.members(reap.scan(), self.level.name, self.pid, self.uid)
        return sum(p.cpu_seconds for p in procs), sum(p.rss_bytes for p in procs), [p.pid for p in procs]

    def _add_stall(self, pids: list[int], waiting: int | None) -> None:
        """Count how long its threads, and during a call the grader's threads it waits on (the
        one `waiting` for its answer, the one reading its output), waited for a CPU since the
        last look, at most the time between looks: a worker that keeps its own threads waiting
        gains no more than that, and spends CPU seconds doing it. Looked at by the watchdog and
        at each call's start and end, so that a short call is counted too."""
        with self._looking:
            now = time.monotonic()
            ours = () if waiting is None else tuple(t for t in (waiting, self._drainer) if t is not None)
            delays = reap.run_delays(pids, ours)
            waited = sum(max(ns - self._delays.get(tid, ns), 0) for tid, ns in delays.items()) / 1e9
            self._delays = delays
            self._stalled += min(waited, now - self._looked)
            self._looked = now

    def _spent(self, call: _Call) -> float:
        """Seconds `call` has taken, less the time the worker waited for a CPU."""
        return time.monotonic() - call.started - (self._stalled - call.stalled)

    def _scratch(self, everywhere: bool) -> tuple[int, int]:
        """(bytes, files) it wrote where it may: its scratch folder and, at "uid" without
        Landlock, what its uid owns in the folders every user may write to. At "namespaces" its
        scratch is a tmpfs of the limit's size: the kernel says no."""
        if self.folder is None:
            return 0, 0
        where = [self.folder] + (reap.owned_in_shared_folders(self.uid) if everywhere and self.uid is not None
                                 and self.level.name == "uid" and not self.level.landlock else [])
        return reap.disk_usage(where, self.limits.scratch_files + 1)

    def _watch(self) -> None:
        tick = 0
        while not self._stop.wait(0.1):  # a scan of /proc costs about a millisecond
            cpu, rss, pids = self._usage()
            call = self._call
            self._add_stall(pids, call.thread if call is not None else None)
            count, now = len(pids), time.monotonic()
            if call is not None:
                self.cpu_used = cpu - call.cpu
                if self.cpu_used > call.cpu_limit:
                    self.kill(f"used more than {call.cpu_limit:.0f} s of CPU time", for_time=True)
                elif self._spent(call) > call.wall_limit or now - call.started > BACKSTOP * call.wall_limit:
                    self.kill(call.out_of_time, for_time=True)
            if rss > self.limits.memory_bytes:
                self.kill(f"used more than the memory limit of {self.limits.memory_bytes / 2**30:.1f} GiB")
            elif count > self.limits.processes:
                self.kill(f"started more than {self.limits.processes} processes")
            written, files = self._scratch(everywhere=tick % 10 == 0)
            if written > self.limits.scratch_bytes:
                self.kill(f"wrote more than the disk limit of {self.limits.scratch_bytes / 2**20:.0f} MiB")
            elif files > self.limits.scratch_files:
                self.kill(f"made more than the limit of {self.limits.scratch_files} files")
            tick += 1

    def kill(self, reason: str, for_time: bool = False) -> None:
        if self.reason is None:
            self.reason, self.stopped_for_time = reason, for_time
        if self.cgroup is not None:
            self.cgroup.kill()
        reap.kill_all(self.level.name, self.pid, self.uid)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the grader's thread that waits on it
        except OSError:
            pass
        self.sock.close()

    def close(self) -> None:
        self._stop.set()
        if self.reason is None:
            self.reason = "closed"
        self.sock.close()
        reap.clean_up(self.level.name, self.pid, self.uid, self.folder)
        if self.cgroup is not None:
            self.cgroup.remove()

    def exchange(self, message: Load | Call | None, expect: type, what: str, cpu_limit: float, wall_limit: float,
                 out_of_time: str | None = None):
        """Send `message` (if any) and wait for a reply of type `expect`, using at most
        `cpu_limit` CPU seconds and `wall_limit` seconds not counting waits for a CPU
        (`out_of_time`: why, when the wall limit is not this call's own but what is left of a
        larger budget); WorkerFailure says why there is none."""
        if self.reason:
            raise WorkerFailure(f"the submission's process was stopped earlier: it {self.reason}")
        if cpu_limit <= 0 or wall_limit <= 0:
            self.kill(out_of_time or "ran out of the time this check allows", for_time=True)
            raise WorkerFailure(f"the submission's process {self.reason}")
        out_of_time = out_of_time or f"did not finish {what} within {wall_limit:.0f} s"
        thread = threading.get_native_id()
        cpu, _, pids = self._usage()
        self._add_stall(pids, thread)
        call = self._call = _Call(cpu, cpu_limit, wall_limit, out_of_time, time.monotonic(), self._stalled, thread)
        try:
            if message is not None:
                self.sock.settimeout(wall_limit)
                messages.send(self.sock, message)
            # The watchdog stops the worker when its time is up; this deadline only backs it up.
            deadline = call.started + BACKSTOP * wall_limit + 5
            return messages.expect(messages.receive(self.sock, messages.FROM_WORKER, deadline), expect)
        except (socket.timeout, TimeoutError):
            self.kill(out_of_time, for_time=True)
        except messages.GarbageReply as e:
            self.kill("sent a reply that is not data")
            raise WorkerFailure(f"the submission's process answered garbage during {what}: {e}") from None
        except (messages.ChannelError, OSError):
            time.sleep(0.15)  # let the watchdog say why, if it was the one
            self.kill(f"exited during {what}")
        finally:
            cpu, _, pids = self._usage()
            self._add_stall(pids, thread)
            self.cpu_used = cpu - call.cpu if self.reason is None else self.cpu_used
            self.held += self._spent(call)
            self._call = None
        raise WorkerFailure(f"the submission's process {self.reason}")

    def output_text(self) -> str:
        text = self.output.decode(errors="replace")
        return text + (f"\n[... {self.output_dropped} more bytes of output dropped]" if self.output_dropped else "")


# ---- the server ------------------------------------------------------------------------------

# What the server (and so every worker, whose memory keeps the environment it was started with)
# may know of the grader's environment: where things are, never tokens or passwords.
SERVER_ENVIRONMENT = ("HOME", "LANG", "LC_ALL", "TZ", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR",
                      "AUTOGRADER_DATA", "AUTOGRADER_IDX_PATH", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")


def server_environment() -> dict[str, str]:
    env = {name: os.environ[name] for name in SERVER_ENVIRONMENT if name in os.environ}
    # malloc in transparent huge pages: a fork copies one page table entry for 2 MiB where it
    # would copy 512, so a worker forks several times faster from the big warm server.
    tunables = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), "glibc.malloc.hugetlb=1"]))
    return {**env, "PATH": "/usr/bin:/bin", "AUTOGRADER_OFFLINE": "1", "GLIBC_TUNABLES": tunables}


class Server:
    """The pre-warmed process that forks workers; restarted if something killed it. `labels()`
    gives the training labels, renamed by the run, for the workers of labs that train: the
    server loads the training images the first time such a worker is asked for."""

    def __init__(self, course: Course, level: Level, limits: Limits, device: str, protected: list[Path],
                 labels: Callable[[], "torch.Tensor"] | None = None):
        self.course, self.level, self.limits, self.device, self.labels = course, level, limits, device, labels
        protected = sorted({str(Path(p).resolve()) for p in protected})
        self.settings = settings(level, limits, plan(protected, device == "cuda"))
        self.cgroups = Cgroups.find(f"autograder-{os.getpid()}")
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # python -I from an empty folder of its own: nothing planted in a working folder or the
        # environment is imported. The server leaves and removes the folder once it has loaded.
        self.empty = tempfile.mkdtemp(prefix="autograder-server-")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-m", "autograder.worker", str(theirs.fileno())], cwd=self.empty,
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, start_new_session=True,
                env=server_environment(), preexec_fn=lambda: confine.die_with_parent(None))
        finally:
            theirs.close()
        s, course = self.settings, self.course
        start = messages.Start(helpers=str(course.source / HELPERS), dataset=course.dataset,
                               train_split=course.train_split, withheld_split=course.withheld_split,
                               level=self.level.name, userns=self.level.userns, landlock=self.level.landlock,
                               read=s.plan.read, links=s.plan.links, devices=s.plan.devices, device=self.device,
                               file_bytes=s.file_bytes, cpu_seconds=s.cpu_seconds, processes=s.processes,
                               scratch_bytes=s.scratch_bytes, threads=s.threads)
        self.control.send(messages.encode(start))
        self.ready = self.holds_data = False  # it imports meanwhile; the first worker waits for it

    def _await_ready(self, what: str) -> None:
        self.control.settimeout(600)
        try:
            ready = messages.expect(messages.decode(self.control.recv(1 << 20), messages.FROM_SERVER), messages.Ready)
        except (OSError, messages.ChannelError) as e:
            raise RuntimeError(f"the grading server did not {what} ({e})") from None
        if ready.error:
            raise RuntimeError(f"the grading server could not {what}: {ready.error}")

    def worker(self, data: bool = False) -> Worker:
        """A fresh worker, confined, its code not yet loaded; with `data`, holding the training set."""
        with self._lock:
            if self.process.poll() is not None:
                self._start()
            if not self.ready:
                self._await_ready("start")
                self.ready = True
            if data and not self.holds_data:
                labels = self.labels()
                small = torch.uint8 if int(labels.max()) < 256 else torch.int32  # one packet on the control socket
                self.control.send(messages.encode(messages.LoadData(labels.to(small))))
                self._await_ready("load the training set")
                self.holds_data = True
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            read_end, write_end = os.pipe()
            group = self.cgroups.worker(self.limits.memory_bytes, self.limits.processes) if self.cgroups else None
            try:
                spawn = messages.Spawn(cgroup=group.procs_files if group else ())
                socket.send_fds(self.control, [messages.encode(spawn)], [theirs.fileno(), write_end])
                spawned = messages.expect(messages.decode(self.control.recv(1 << 16), messages.FROM_SERVER),
                                          messages.Spawned)
            except BaseException:
                ours.close()
                os.close(read_end)
                if group is not None:
                    group.remove()
                raise
            finally:
                theirs.close()
                os.close(write_end)
        return Worker(self.level, spawned, ours, read_end, self.limits, group)

    def close(self) -> None:
        self.control.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        reap.remove_tree(self.empty)
        if self.cgroups is not None:
            self.cgroups.remove()
