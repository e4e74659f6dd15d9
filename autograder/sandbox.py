"""The grader's side of the sandbox: which level workers are confined at, what they may read,
and the limits they run under.

The level is chosen once, at start, by confining a throwaway worker exactly as a real one would
be and checking what it can read (`choose_level`). The limits are the grader's to keep, from
outside the worker (server.py): CPU seconds per call, set from the reference's own cost;
wall-clock as a backstop per call and a budget per lab; memory and processes summed over every
process of a worker; what it writes to disk; its output.
"""
from __future__ import annotations

import os
import stat
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from . import confine, reap
from .confine import Level


@dataclass(frozen=True)
class Limits:
    """What one worker may use. Time is CPU seconds per call: `cpu_factor` times what the
    reference solution needed for that call, at least `min_cpu_seconds` (or `default_cpu_seconds`
    when the reference's cost is unknown); wall-clock is a backstop per call, `wall_factor` times
    the CPU limit and at least `min_wall_seconds`, and a budget per lab, `lab_factor` times the
    reference's own time for the lab plus `lab_margin_seconds` (or `default_lab_seconds`), so that
    a submission that sleeps through every call holds its job for about a minute, not an hour.
    Wall seconds leave out the time a worker waited for a CPU: a busy machine fails no one."""
    memory_bytes: int = 4 * 2**30
    processes: int = 64
    file_bytes: int = 64 * 2**20
    scratch_bytes: int = 256 * 2**20
    scratch_files: int = 10_000
    output_bytes: int = 64 * 2**10
    threads: int = 1
    cpu_factor: float = 20.0
    min_cpu_seconds: float = 10.0
    default_cpu_seconds: float = 60.0
    wall_factor: float = 3.0
    min_wall_seconds: float = 60.0
    lab_factor: float = 10.0
    lab_margin_seconds: float = 30.0
    default_lab_seconds: float = 600.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value > 0:
                raise ValueError(f"the limit {name.replace('_', ' ')} must be positive, not {value}")

    def budget(self, reference_cpu: float | None) -> tuple[float, float]:
        """(CPU seconds, wall seconds) for what the reference did in `reference_cpu` seconds."""
        cpu = self.default_cpu_seconds if reference_cpu is None else \
            max(self.min_cpu_seconds, self.cpu_factor * reference_cpu)
        return cpu, max(self.min_wall_seconds, self.wall_factor * cpu)

    def lab_budget(self, reference_seconds: float | None) -> float:
        """Wall seconds a lab may take, for a lab the reference graded in `reference_seconds`."""
        if reference_seconds is None:
            return self.default_lab_seconds
        return self.lab_factor * reference_seconds + self.lab_margin_seconds


# ---- levels ----------------------------------------------------------------------------------

class SandboxError(RuntimeError):
    """No sandbox level is possible (or the one asked for is not); the message says why."""


def plan(protected: list[str], cuda: bool = False) -> confine.Plan:
    """What every worker of a run may read: Python and the system, never a `protected` path."""
    return confine.allow_list(confine.python_paths(), protected, cuda)


def settings(level: Level, limits: Limits, allowed: confine.Plan, scratch_parent: str | None = None
             ) -> confine.Settings:
    """How every worker of a run is confined."""
    lab_cpu = int(max(limits.default_cpu_seconds, limits.min_cpu_seconds) * limits.cpu_factor) + 60
    return confine.Settings(level, allowed, limits.file_bytes, lab_cpu, limits.processes, limits.scratch_bytes,
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
            extra = [e for e in shown if e not in plan.links and not any(r == e or r.startswith(e + "/")
                                                                         for r in plan.read)]
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
    try:
        uids = confine.Uids.claim()
    except confine.ConfinementError as e:
        return str(e)
    scratch = tempfile.mkdtemp(prefix="autograder-probe-") if level.name != "namespaces" else None
    if scratch:
        os.chmod(scratch, 0o711)
    s = settings(level, Limits(), plan(protected, cuda), scratch)
    read, write = os.pipe()

    def report(error: str | None) -> None:
        os.write(write, (error or _verify(s.plan, confine.hidden_paths(protected)) or "").encode()[:1000])

    try:
        pid, uid = confine.fork_worker(s, uids.next(), report, keep=(write,))
        os.close(write)
        with os.fdopen(read, "rb") as f:
            error = f.read().decode(errors="replace")
        os.waitpid(pid, 0)
        reap.clean_up(level.name, pid, uid, None)
    finally:
        uids.release()
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
            for change in _open_to_workers(plan(protected, cuda), confine.hidden_paths(protected), lock=not abi):
                print(f"sandbox: {change}", file=sys.stderr)
            error = _probe(level, protected, cuda)
            if error is None:
                return level
            tried.append(f"uid: {error}")
    raise SandboxError("no sandbox is possible here (" + "; ".join(tried) + "); grade as root, allow "
                       "unprivileged user namespaces, or pass --no-sandbox to grade without isolation")


