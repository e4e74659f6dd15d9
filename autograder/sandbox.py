"""The grader's side of the sandbox: the pre-warmed server and a handle on each worker.

The grader never runs student code. It starts one server (worker.py) that has torch and the data
loaded; each lab submission gets a worker forked from it in milliseconds. The grader keeps the
limits the worker cannot lift itself: wall-clock per check and per lab (it stops waiting and kills),
resident memory and process count (a watchdog sums them over every process of the worker), and
the flood of output (only the head is kept).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from . import channel
from .course import Course

UID_BASE = 200_000  # a root grader runs worker pid P as uid UID_BASE + P: unique while it lives


@dataclass(frozen=True)
class Limits:
    check_seconds: float = 300.0
    lab_seconds: float = 900.0
    memory_bytes: int = 4 * 2**30
    processes: int = 64
    file_bytes: int = 64 * 2**20
    output_bytes: int = 64 * 2**10
    threads: int = 1

    def for_worker(self) -> dict:
        return {**asdict(self), "cpu_seconds": int(self.lab_seconds * max(1, self.threads)) + 60}


class WorkerFailure(Exception):
    """The worker could not answer: the message says why in words a student understands."""


def _processes(uid: int | None, session: int) -> list[tuple[int, int]]:
    """(pid, resident bytes) of every process of a worker: by uid when it has its own, else by session."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        mine = (int(fields["Uid"].split()[0]) == uid) if uid is not None else \
            (int(fields.get("NSsid", "0").split()[0]) == session)
        if mine:
            found.append((int(entry), int(fields.get("VmRSS", "0 kB").split()[0]) * 1024))
    return found


class Worker:
    """One lab submission's process: load its code, then run probes, each under a deadline."""

    def __init__(self, pid: int, uid: int | None, sock: socket.socket, output_fd: int, folder: str,
                 limits: Limits, deadline: float | None = None):
        self.pid, self.uid, self.sock, self.folder, self.limits = pid, uid, sock, folder, limits
        self.deadline = deadline or time.monotonic() + limits.lab_seconds
        self.reason: str | None = None  # why it was stopped, once it was
        self.output, self.output_dropped = bytearray(), 0
        self._stop = threading.Event()
        threading.Thread(target=self._drain, args=(output_fd,), daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    # -- limits kept from outside ------------------------------------------------------------
    def _drain(self, fd: int) -> None:
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                room = self.limits.output_bytes - len(self.output)
                self.output += chunk[:max(room, 0)]
                self.output_dropped += max(len(chunk) - max(room, 0), 0)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):  # a scan of /proc costs about a millisecond
            procs = _processes(self.uid, self.pid)
            if sum(rss for _, rss in procs) > self.limits.memory_bytes:
                self.kill(f"used more than the memory limit of {self.limits.memory_bytes / 2**30:.1f} GiB")
            elif len(procs) > self.limits.processes:
                self.kill(f"started more than {self.limits.processes} processes")

    def kill(self, reason: str) -> None:
        self.reason = self.reason or reason
        for _ in range(50):  # a fork flood races the killing: repeat until nothing is left
            procs = _processes(self.uid, self.pid)
            if not procs:
                break
            for pid, _ in procs:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)
        self.sock.close()

    def close(self) -> None:
        self._stop.set()
        if self.reason is None:
            self.kill("closed")
        # rm, not shutil.rmtree: a folder nested a few thousand deep makes rmtree recurse out of stack.
        subprocess.run(["rm", "-rf", "--one-file-system", self.folder], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)

    # -- talking to it -----------------------------------------------------------------------
    def _exchange(self, message: Any, what: str) -> Any:
        if self.reason:
            raise WorkerFailure(f"the submission's process was stopped earlier: it {self.reason}")
        remaining = self.deadline - time.monotonic()
        timeout = min(self.limits.check_seconds, remaining)
        if timeout <= 0:
            self.kill(f"ran past the lab's time limit of {self.limits.lab_seconds:.0f} s")
            raise WorkerFailure(f"the lab's time limit of {self.limits.lab_seconds:.0f} s was used up")
        try:
            self.sock.settimeout(timeout)
            channel.send(self.sock, message)
            return channel.receive(self.sock, time.monotonic() + timeout)
        except (socket.timeout, TimeoutError):
            self.kill(f"did not finish {what} within {timeout:.0f} s")
        except channel.GarbageReply as e:
            self.kill("sent a reply that is not data")
            raise WorkerFailure(f"the submission's process answered garbage during {what}: {e}") from None
        except (channel.ChannelError, OSError):
            time.sleep(0.1)  # let the watchdog say why, if it was the one
            self.kill(f"exited during {what}")
        raise WorkerFailure(f"the submission's process {self.reason}")

    def load(self, setup: list[str], units: dict[str, str]) -> dict:
        return self._exchange({"setup": setup, "units": units}, "loading the notebook's code")

    def run(self, probe_id: str, args: dict, what: str) -> Any:
        reply = self._exchange({"probe": probe_id, "args": args}, what)
        if not isinstance(reply, dict) or not ("value" in reply or "error" in reply):
            self.kill("sent a reply that is not data")
            raise WorkerFailure(f"the submission's process answered garbage during {what}")
        if "error" in reply:
            raise WorkerFailure(str(reply["error"]))
        return reply["value"]

    def output_text(self) -> str:
        text = self.output.decode(errors="replace")
        return text + (f"\n[... {self.output_dropped} more bytes of output dropped]" if self.output_dropped else "")


class Server:
    """The pre-warmed process that forks workers; restarted if something killed it."""

    def __init__(self, course: Course, device: str = "cpu", limits: Limits = Limits(), hide: list[str] = ()):
        """`hide`: folders a worker run as root must not see (solutions, checks, submissions, output)."""
        self.course, self.device, self.limits = course, device, limits
        self.hide = sorted({str(course.source), str(course.checks), *hide})
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autograder.worker", str(self.course.root), str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.ready = False  # it loads torch and the data meanwhile; the first worker waits for it

    def _await_ready(self) -> None:
        self.control.settimeout(300)
        try:
            channel.decode(self.control.recv(1 << 20))
        except (OSError, channel.ChannelError) as e:
            raise RuntimeError(f"the grading server did not start ({e})") from None
        self.ready = True

    def worker(self, deadline: float | None = None) -> Worker:
        """A fresh worker; `deadline` (time.monotonic) carries a lab's time limit over restarts."""
        with self._lock:
            if self.process.poll() is not None:
                self._start()
            if not self.ready:
                self._await_ready()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            read_end, write_end = os.pipe()
            folder = tempfile.mkdtemp(prefix="autograder-worker-")
            request = {"limits": self.limits.for_worker(), "folder": folder, "device": self.device,
                       "own_uid": os.geteuid() == 0, "hide": self.hide}
            try:
                socket.send_fds(self.control, [channel.encode(request)], [theirs.fileno(), write_end])
                pid = channel.decode(self.control.recv(1 << 16))["pid"]
            except BaseException:
                ours.close()
                os.close(read_end)
                os.rmdir(folder)
                raise
            finally:
                theirs.close()
                os.close(write_end)
        uid = UID_BASE + pid if os.geteuid() == 0 else None
        return Worker(pid, uid, ours, read_end, folder, self.limits, deadline)

    def close(self) -> None:
        self.control.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
