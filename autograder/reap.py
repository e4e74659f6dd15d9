"""Finding every process of a worker, measuring it, and leaving nothing of it behind.

A worker's processes are found by what it cannot shed at its sandbox level: at "namespaces",
being a descendant of its first process (orphans are reparented to its PID 1); at "uid", its
uid; at "none", its session (seccomp forbids setsid). Both the grader's watchdog and the
server's janitor (which acts when the grader dies) use these functions.
"""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    session: int
    uid: int
    cpu_seconds: float  # its own and its reaped children's
    rss_bytes: int


def scan() -> dict[int, Proc]:
    """Every process this one can see."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration, ValueError):
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        found[int(entry)] = Proc(int(entry), int(fields[1]), int(fields[3]), uid, ticks / _TICKS,
                                 int(fields[21]) * _PAGE)
    return found


def members(procs: dict[int, Proc], level: str, pid: int, uid: int | None) -> list[Proc]:
    """The processes of the worker whose first process is `pid`."""
    if level == "uid":
        return [p for p in procs.values() if p.uid == uid]
    if level == "none":
        return [p for p in procs.values() if p.session == pid]
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in procs:
            found.append(procs[current])
        todo.extend(children.get(current, []))
    return found


def run_delays(pids: list[int], threads: tuple[int, ...] = ()) -> dict[int, int]:
    """Nanoseconds each thread of these processes, and each of these threads of this process,
    has spent ready to run but waiting for a CPU (the kernel's schedstat): the time a busy
    machine, not the worker, took."""
    paths = [f"/proc/{os.getpid()}/task/{tid}" for tid in threads]
    for pid in pids:
        try:
            paths += [f"/proc/{pid}/task/{tid}" for tid in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
    found = {}
    for path in paths:
        try:
            with open(f"{path}/schedstat", "rb") as f:
                found[int(path.rsplit("/", 1)[1])] = int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return found


def kill_all(level: str, pid: int, uid: int | None) -> None:
    """SIGKILL every process of the worker, again and again while a fork flood races it."""
    for _ in range(100):
        victims = members(scan(), level, pid, uid)
        if not victims:
            return
        for victim in victims:
            try:
                os.kill(victim.pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)


def owned_in_shared_folders(uid: int) -> list[str]:
    """What this uid made directly in the folders every user may write to."""
    found = []
    for top in WORLD_WRITABLE:
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    found.append(entry.path)
            except OSError:
                pass
    return found


def disk_usage(paths: list[str], most: int) -> tuple[int, int]:
    """(bytes, entries) under `paths`, allocated blocks counted, links not followed; the count
    stops at `most` entries, so a folder of a million files costs no more than `most` stats."""
    size = count = 0
    todo = list(paths)
    while todo and count < most:
        path = todo.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        count += 1
        size += st.st_blocks * 512
        if stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(path) as entries:
                    todo.extend(e.path for e in itertools.islice(entries, max(most - count - len(todo), 0) + 1))
            except OSError:
                pass
    return size, count + len(todo)


def remove_files_of(uid: int) -> None:
    """What a worker of this uid left in the folders every user may write to."""
    for path in owned_in_shared_folders(uid):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                remove_tree(path)
            else:
                os.unlink(path)
        except OSError:
            pass


def remove_tree(path: str) -> None:
    # rm, not shutil.rmtree: a folder nested thousands deep makes rmtree recurse out of stack.
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", path], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)


def clean_up(level: str, pid: int, uid: int | None, folder: str | None) -> None:
    """Leave nothing of a worker: its processes, its scratch folder, its files elsewhere."""
    kill_all(level, pid, uid)
    if folder:
        remove_tree(folder)
    if level == "uid" and uid is not None:
        remove_files_of(uid)


def janitor(commands: int) -> None:
    """Run in a child of the server: read 'LEVEL PID UID CGROUPS FOLDER' lines from `commands`;
    when the server is gone (end of file), clean up after every worker it started."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.setsid()
    workers, buffer = [], b""
    while chunk := os.read(commands, 4096):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            level, pid, uid, cgroups, folder = line.decode().split(" ", 4)
            workers.append((level, int(pid), None if uid == "-" else int(uid), [] if cgroups == "-" else
                            cgroups.split(","), None if folder == "-" else folder))
    for level, pid, uid, cgroups, folder in workers:
        if level != "namespaces":
            clean_up(level, pid, uid, folder)
        for group in cgroups:
            for folder in (group, os.path.dirname(group)):  # the worker's, then the run's, once empty
                try:
                    os.rmdir(folder)
                except OSError:
                    pass
