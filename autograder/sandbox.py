"""The grader's side of the sandbox: choosing the level, the pre-warmed server, and each worker.

The grader never runs student code. It starts one server (worker.py, `python -I` from an empty
folder) that loads torch, the course helpers and the training set; each lab submission gets a
worker forked from it in milliseconds and confined at the level chosen at start (confine.py).
The grader keeps the limits a worker cannot lift: CPU seconds per call (set from the reference's
own cost), wall-clock only as a backstop, resident memory and process count summed over every
process of the worker, and the flood of output (only the head is kept).
"""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import confine, messages, reap
from .cgroups import Cgroup, Cgroups
from .confine import Level
from .messages import Call, Load


@dataclass(frozen=True)
class Limits:
    """What one worker may use. Time is CPU seconds per call: `cpu_factor` times what the
    reference solution needed for that call, at least `min_cpu_seconds` (or `default_cpu_seconds`
    when the reference's cost is unknown); wall-clock is only a backstop, `wall_factor` times the
    CPU limit and at least `min_wall_seconds`."""
    memory_bytes: int = 4 * 2**30
    processes: int = 64
    file_bytes: int = 64 * 2**20
    scratch_bytes: int = 256 * 2**20
    output_bytes: int = 64 * 2**10
    threads: int = 1
    cpu_factor: float = 20.0
    min_cpu_seconds: float = 10.0
    default_cpu_seconds: float = 60.0
    wall_factor: float = 3.0
    min_wall_seconds: float = 60.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value > 0:
                raise ValueError(f"the limit {name.replace('_', ' ')} must be positive, not {value}")

    def budget(self, reference_cpu: float | None) -> tuple[float, float]:
        """(CPU seconds, wall seconds) for what the reference did in `reference_cpu` seconds."""
        cpu = self.default_cpu_seconds if reference_cpu is None else \
            max(self.min_cpu_seconds, self.cpu_factor * reference_cpu)
        return cpu, max(self.min_wall_seconds, self.wall_factor * cpu)


# ---- levels ----------------------------------------------------------------------------------

class SandboxError(RuntimeError):
    """No sandbox level is possible (or the one asked for is not); the message says why."""


def settings(level: Level, limits: Limits, protected: list[str], cuda: bool = False,
             scratch_parent: str | None = None) -> confine.Settings:
    """How every worker of a run is confined: `protected` paths are never readable from it."""
    plan = confine.allow_list(confine.python_paths(), protected, cuda)
    lab_cpu = int(max(limits.default_cpu_seconds, limits.min_cpu_seconds) * limits.cpu_factor) + 60
    return confine.Settings(level, plan, limits.file_bytes, lab_cpu, limits.processes, limits.scratch_bytes,
                            limits.threads, scratch_parent)


def _verify(plan: confine.Plan, protected: list[str]) -> str | None:
    """Inside a confined worker: what it must read, it can; what is protected, it cannot."""
    for path in protected:
        try:
            if not os.path.isdir(path):
                open(path, "rb").close()
                return f"a worker can read {path}"
            # A protected folder may be the way to an allowed one (a virtual environment inside
            # the course folder): then that is all it may show.
            shown = [os.path.join(path, e) for e in os.listdir(path)]
            extra = [e for e in shown if not any(r == e or r.startswith(e + "/") for r in plan.read)]
            if extra:
                return f"a worker can read {extra[0]}"
        except OSError:
            pass
    for path in plan.read:
        try:
            os.listdir(path) if os.path.isdir(path) else open(path, "rb").close()
        except OSError as e:
            return f"a worker cannot read {path} ({e.strerror})"
    return None


def _open_to_workers(plan: confine.Plan, protected: list[str], lock: bool) -> list[str]:
    """At "uid", workers read through the permissions of a uid of their own: the allow-list must
    be reachable by others (its parents traversable). Without Landlock (`lock`), what is
    protected is also made unreadable by others. Returns what was changed."""
    changed = []
    for path in plan.read:
        for parent in reversed(Path(path).parents):
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
                changed.append(f"{parent}: others may traverse it")

    def lock_up(path: Path) -> None:
        if not path.exists() or path.is_symlink() or str(path) in plan.read:
            return
        mode = stat.S_IMODE(path.stat().st_mode)
        if any(r.startswith(str(path).rstrip("/") + "/") for r in plan.read) and path.is_dir():
            if mode & (stat.S_IROTH | stat.S_IWOTH):  # the way to an allowed tree: traversable only
                path.chmod(mode & ~(stat.S_IROTH | stat.S_IWOTH))
                changed.append(f"{path}: others may traverse it only")
            for child in path.iterdir():
                lock_up(child)
        elif mode & stat.S_IRWXO:
            path.chmod(mode & ~stat.S_IRWXO)
            changed.append(f"{path}: no access for others")

    if lock:
        for path in protected:
            lock_up(Path(path))
    return changed


def _probe(level: Level, protected: list[str], cuda: bool) -> str | None:
    """Confine a throwaway worker exactly as a real one would be; None when that worked and it
    could read what it needs and nothing protected."""
    scratch = tempfile.mkdtemp(prefix="autograder-probe-") if level.name != "namespaces" else None
    if scratch:
        os.chmod(scratch, 0o711)
    read, write = os.pipe()
    s = settings(level, Limits(), protected, cuda, scratch)

    def report(error: str | None) -> None:
        os.write(write, (error or _verify(s.plan, confine.hidden_paths(protected)) or "").encode()[:1000])

    try:
        pid, _ = confine.fork_worker(s, report, keep=(write,))
        os.close(write)
        with os.fdopen(read, "rb") as f:
            error = f.read().decode(errors="replace")
        os.waitpid(pid, 0)
    finally:
        if scratch:
            reap.remove_tree(scratch)
    return error or None


def choose_level(requested: str = "auto", protected: list[Path] = (), cuda: bool = False) -> Level:
    """The strongest level that works here (or exactly `requested`: auto, namespaces, uid or
    none); SandboxError naming every cause when none does."""
    if requested == "none":
        return Level("none")
    protected = [str(Path(p).resolve()) for p in protected]
    tried = []
    if requested in ("auto", "namespaces"):
        for userns in ((False, True) if os.geteuid() == 0 else (True,)):
            level = Level("namespaces", userns=userns)
            error = _probe(level, protected, cuda)
            if error is None:
                return level
            tried.append(f"namespaces{' in a user namespace' if userns else ''}: {error}")
    if requested in ("auto", "uid"):
        if os.geteuid() != 0:
            tried.append("uid: needs root")
        else:
            # Landlock keeps a worker to the allow-list; without it, permissions have to.
            abi = confine.landlock_abi() if os.environ.get("AUTOGRADER_LANDLOCK", "1") != "0" else 0
            level = Level("uid", landlock=abi)
            plan = settings(level, Limits(), protected, cuda).plan
            for change in _open_to_workers(plan, confine.hidden_paths(protected), lock=not abi):
                print(f"sandbox: {change}", file=sys.stderr)
            error = _probe(level, protected, cuda)
            if error is None:
                return level
            tried.append(f"uid: {error}")
    raise SandboxError("no sandbox is possible here (" + "; ".join(tried) + "); grade as root, allow "
                       "unprivileged user namespaces, or pass --no-sandbox to grade without isolation")


# ---- a worker --------------------------------------------------------------------------------

class WorkerFailure(Exception):
    """The worker could not answer: the message says why in words a student understands."""


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
        self._call: tuple[float, float] | None = None  # (CPU seconds at its start, its CPU limit)
        self._stop = threading.Event()
        threading.Thread(target=self._drain, args=(output_fd,), daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _drain(self, fd: int) -> None:
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                room = max(self.limits.output_bytes - len(self.output), 0)
                self.output += chunk[:room]
                self.output_dropped += len(chunk) - len(chunk[:room])

    def _usage(self) -> tuple[float, int, int]:
        """(CPU seconds, memory bytes, processes): from its cgroup where it has one (where the
        kernel counts everything), else summed over its processes (RSS, CPU of the living and of
        the children they reaped)."""
        if self.cgroup is not None:
            try:
                cpu, memory, killed = self.cgroup.usage()
                if killed:
                    self.kill(f"used more than the memory limit of {self.limits.memory_bytes / 2**30:.1f} GiB")
                return cpu, memory, len(self.cgroup.pids())
            except (OSError, ValueError):
                pass  # removed meanwhile: the worker is gone
        procs = reap.members(reap.scan(), self.level.name, self.pid, self.uid)
        return sum(p.cpu_seconds for p in procs), sum(p.rss_bytes for p in procs), len(procs)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):  # a scan of /proc costs about a millisecond
            cpu, rss, count = self._usage()
            call = self._call
            if call is not None:
                self.cpu_used = cpu - call[0]
                if self.cpu_used > call[1]:
                    self.kill(f"used more than {call[1]:.0f} s of CPU time", for_time=True)
            if rss > self.limits.memory_bytes:
                self.kill(f"used more than the memory limit of {self.limits.memory_bytes / 2**30:.1f} GiB")
            elif count > self.limits.processes:
                self.kill(f"started more than {self.limits.processes} processes")

    def kill(self, reason: str, for_time: bool = False) -> None:
        if self.reason is None:
            self.reason, self.stopped_for_time = reason, for_time
        if self.cgroup is not None:
            self.cgroup.kill()
        reap.kill_all(self.level.name, self.pid, self.uid)
        self.sock.close()

    def close(self) -> None:
        self._stop.set()
        if self.reason is None:
            self.reason = "closed"
        self.sock.close()
        reap.clean_up(self.level.name, self.pid, self.uid, self.folder)
        if self.cgroup is not None:
            self.cgroup.remove()

    def exchange(self, message: Load | Call | None, expect: type, what: str, cpu_limit: float, wall_limit: float):
        """Send `message` (if any) and wait for a reply of type `expect`, using at most
        `cpu_limit` CPU seconds and `wall_limit` seconds; WorkerFailure says why there is none."""
        if self.reason:
            raise WorkerFailure(f"the submission's process was stopped earlier: it {self.reason}")
        if cpu_limit <= 0 or wall_limit <= 0:
            self.kill("ran out of the time this check allows", for_time=True)
            raise WorkerFailure(f"the submission's process {self.reason}")
        self._call = (self._usage()[0], cpu_limit)
        try:
            self.sock.settimeout(wall_limit)
            if message is not None:
                messages.send(self.sock, message)
            return messages.expect(messages.receive(self.sock, messages.FROM_WORKER, time.monotonic() + wall_limit), expect)
        except (socket.timeout, TimeoutError):
            self.kill(f"did not finish {what} within {wall_limit:.0f} s", for_time=True)
        except messages.GarbageReply as e:
            self.kill("sent a reply that is not data")
            raise WorkerFailure(f"the submission's process answered garbage during {what}: {e}") from None
        except (messages.ChannelError, OSError):
            time.sleep(0.15)  # let the watchdog say why, if it was the one
            self.kill(f"exited during {what}")
        finally:
            self.cpu_used = self._usage()[0] - self._call[0] if self.reason is None else self.cpu_used
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
    """The pre-warmed process that forks workers; restarted if something killed it."""

    def __init__(self, course_root: Path, level: Level, limits: Limits, device: str, protected: list[Path],
                 secret: str):
        self.course_root, self.level, self.limits, self.device, self.secret = course_root, level, limits, device, secret
        self.protected = sorted({str(Path(p).resolve()) for p in protected})
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
        s = settings(self.level, self.limits, self.protected)
        start = messages.Start(course=str(self.course_root), secret=self.secret, level=self.level.name,
                               userns=self.level.userns,
                               landlock=self.level.landlock, protected=tuple(self.protected), device=self.device,
                               file_bytes=s.file_bytes, cpu_seconds=s.cpu_seconds, processes=s.processes,
                               scratch_bytes=s.scratch_bytes, threads=s.threads)
        self.control.send(messages.encode(start))
        self.ready = False  # it loads torch and the data meanwhile; the first worker waits for it

    def _await_ready(self) -> None:
        self.control.settimeout(600)
        try:
            ready = messages.expect(messages.decode(self.control.recv(1 << 20), messages.FROM_SERVER), messages.Ready)
        except (OSError, messages.ChannelError) as e:
            raise RuntimeError(f"the grading server did not start ({e})") from None
        if ready.error:
            raise RuntimeError(f"the grading server could not start: {ready.error}")
        self.ready = True

    def worker(self) -> Worker:
        """A fresh worker, confined, its code not yet loaded."""
        with self._lock:
            if self.process.poll() is not None:
                self._start()
            if not self.ready:
                self._await_ready()
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
