"""A control group per worker, where the machine lets the grader make them (root, a writable
cgroup v2 tree with the memory, pids and cpu controllers, or cgroup v1's memory, pids and cpuacct
hierarchies). What the kernel accounts there cannot be hidden: memory in tmpfs, shared memory
and memfd counts, CPU time of children long reaped counts, and the memory and process limits
are enforced by the kernel, not sampled. Where no cgroup can be made, the grader falls back to
rlimits and its watchdog (sandbox.py). Every use is tried once at start (`Cgroups.find`), so
a tree that half works is not used at all.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

V1_CONTROLLERS = ("memory", "pids", "cpuacct")


def _own(hierarchy: str) -> str | None:
    """This process's path in a hierarchy ('' for cgroup v2's), from /proc/self/cgroup."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if (hierarchy == "" and number == "0") or hierarchy in controllers.split(","):
            return path
    return None


class Cgroup:
    """One cgroup, in each hierarchy it spans (one folder for v2, three for v1)."""

    def __init__(self, version: int, folders: dict[str, Path]):
        self.version, self.folders = version, folders

    def _file(self, controller: str, name: str) -> Path:
        return (self.folders[""] if self.version == 2 else self.folders[controller]) / name

    @property
    def procs_files(self) -> tuple[str, ...]:
        """Where a process writes "0" to join this cgroup."""
        return tuple(str(folder / "cgroup.procs") for folder in self.folders.values())

    def limit(self, memory_bytes: int, processes: int) -> None:
        if self.version == 2:
            self._file("", "memory.max").write_text(str(memory_bytes))
            swap = self._file("", "memory.swap.max")
            if swap.exists():
                swap.write_text("0")
            self._file("", "pids.max").write_text(str(processes))
        else:
            self._file("memory", "memory.limit_in_bytes").write_text(str(memory_bytes))
            swap = self._file("memory", "memory.memsw.limit_in_bytes")
            if swap.exists():
                swap.write_text(str(memory_bytes))
            self._file("pids", "pids.max").write_text(str(processes))

    def usage(self) -> tuple[float, int, bool]:
        """(CPU seconds of every process it ever held, memory bytes now, whether the memory limit
        killed something)."""
        if self.version == 2:
            stat = dict(line.split() for line in self._file("", "cpu.stat").read_text().splitlines())
            events = dict(line.split() for line in self._file("", "memory.events").read_text().splitlines())
            return (int(stat["usage_usec"]) / 1e6, int(self._file("", "memory.current").read_text()),
                    int(events.get("oom_kill", 0)) > 0)
        cpu = int(self._file("cpuacct", "cpuacct.usage").read_text()) / 1e9
        memory = int(self._file("memory", "memory.usage_in_bytes").read_text())
        oom = dict(line.split() for line in self._file("memory", "memory.oom_control").read_text().splitlines())
        return cpu, memory, int(oom.get("oom_kill", 0)) > 0

    def pids(self) -> list[int]:
        found: set[int] = set()
        for folder in self.folders.values():
            try:
                found.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return sorted(found)

    def kill(self) -> None:
        kill_file = self._file("", "cgroup.kill") if self.version == 2 else None
        if kill_file is not None and kill_file.exists():
            kill_file.write_text("1")
        for _ in range(100):  # v1 (and a fork racing v2's kill): until nothing is left
            victims = self.pids()
            if not victims:
                return
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill()
        for folder in self.folders.values():
            for _ in range(50):  # the kernel frees a cgroup a moment after its last process
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


class Cgroups:
    """Where the grader makes one cgroup per worker: a folder of its own in each hierarchy."""

    def __init__(self, version: int, bases: dict[str, Path]):
        self.version, self.bases, self.count = version, bases, 0

    @classmethod
    def find(cls, name: str) -> "Cgroups | None":
        """A tree of cgroups named `name` where this process may make them, or None."""
        for make in (cls._v2, cls._v1):
            try:
                found = make(name)
            except OSError:
                found = None
            if found is not None and found._works():
                return found
            if found is not None:
                found.remove()
        return None

    @classmethod
    def _v2(cls, name: str) -> "Cgroups | None":
        root = Path("/sys/fs/cgroup")
        if not (root / "cgroup.controllers").is_file() or _own("") != "/":
            # Only the tree's root may hold processes and give children controllers: a process in
            # a leaf would have to move the processes around it first.
            return None
        if not {"memory", "pids", "cpu"} <= set((root / "cgroup.subtree_control").read_text().split()):
            return None
        base = root / name
        base.mkdir()
        (base / "cgroup.subtree_control").write_text("+memory +pids +cpu")
        return cls(2, {"": base})

    @classmethod
    def _v1(cls, name: str) -> "Cgroups | None":
        bases = {}
        for controller in V1_CONTROLLERS:
            mount = next((Path(f"/sys/fs/cgroup/{m}") for m in (controller, "cpu,cpuacct", "cpuacct,cpu")
                          if (Path(f"/sys/fs/cgroup/{m}") / "cgroup.procs").is_file() and controller in m), None)
            own = _own(controller)
            if mount is None or own is None:
                return None
            bases[controller] = mount / own.lstrip("/") / name
        made = cls(1, {})
        for controller, base in bases.items():
            base.mkdir()
            made.bases[controller] = base
        return made

    def _works(self) -> bool:
        """Make a cgroup, limit it, put a child in it, read it, kill it, remove it."""
        group = self.worker(2**30, 16)
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    for procs in group.procs_files:
                        with open(procs, "w") as f:
                            f.write("0")
                    time.sleep(30)
                finally:
                    os._exit(0)
            deadline = time.monotonic() + 5
            while pid not in group.pids() and time.monotonic() < deadline:
                time.sleep(0.01)
            held = pid in group.pids()
            group.usage()
            group.kill()
            os.waitpid(pid, 0)
            return held
        except (OSError, KeyError, ValueError):
            return False
        finally:
            group.remove()

    def worker(self, memory_bytes: int, processes: int) -> Cgroup:
        """A fresh cgroup for one worker, limited."""
        self.count += 1
        folders = {controller: base / f"w{self.count}" for controller, base in self.bases.items()}
        for folder in folders.values():
            folder.mkdir()
        group = Cgroup(self.version, folders)
        group.limit(memory_bytes, processes)
        return group

    def remove(self) -> None:
        for base in self.bases.values():
            for child in base.glob("w*"):
                if child.is_dir():
                    Cgroup(self.version, {"": child}).remove()
            try:
                base.rmdir()
            except OSError:
                pass
