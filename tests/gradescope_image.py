"""A Gradescope autograder image built as Gradescope builds it, and runs of it as Gradescope runs
them; shared by tests/test_deploy.py and bench/bench_gradescope.py.

Gradescope unzips the bundle into /autograder/source of its base image, copies run_autograder to
/autograder/run_autograder and runs setup.sh as root; then, for each submission, a fresh container
of that image runs /autograder/run_autograder as root without CAP_SYS_ADMIN. Here the base image is
a minimal Debian root made by debootstrap (made once and kept as a tarball, as Gradescope keeps its
base image: it is not ours to test), the bundle's own setup.sh builds the image in a chroot of a
copy of it, and each run is a chroot of an overlay of the built image (nothing a run writes is seen
by the next) in mount and PID namespaces of its own, entered with capsh --drop=cap_sys_admin,
/proc, /dev and a read-only /sys mounted.

The network is emulated, not part of setup.sh: this machine reaches Debian's mirror, but PyPI and
PyTorch's CPU index only as local folders. The root sees them read-only; PIP_INDEX_URL names the
local PyPI, and AUTOGRADER_TORCH_INDEX (setup.sh's default, https://download.pytorch.org/whl/cpu,
is out of reach here) a PEP 503 index made here of the local CPU build of torch. Needs root,
debootstrap, capsh, unshare.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"  # Debian 12: Python 3.11, as the local wheels need
MIRROR = "http://deb.debian.org/debian"
PYPI = Path("/opt/pypi")  # a PEP 503 mirror of the PyPI projects grading needs
WHEELS = Path("/opt/wheels")
TORCH_INDEX = "/opt/torch-cpu/simple"  # where the emulated CPU index appears inside the root
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NEEDS = ("debootstrap", "capsh", "unshare", "chroot", "mount")


def missing_tools() -> list[str]:
    return [tool for tool in NEEDS if shutil.which(tool) is None]


def cpu_torch_wheel() -> Path:
    found = sorted(WHEELS.glob("torch-*+cpu-cp311-*.whl"))
    if not found:
        raise FileNotFoundError(f"no CPU build of torch for Python 3.11 in {WHEELS}")
    return found[-1]


def base_image(cache: Path, run: Callable[..., object] = subprocess.run) -> Path:
    """A tarball of a minimal Debian root (debootstrap --variant=minbase), made once; `run` runs
    each command (check=True)."""
    tarball = cache / f"debian-{SUITE}-minbase.tar"
    if tarball.is_file():
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".debootstrap-") as tmp:
        root = Path(tmp) / "root"
        run(["debootstrap", "--variant=minbase", SUITE, str(root), MIRROR], check=True)
        # As Docker's Debian images are made: dpkg without fsync, no package files left behind.
        (root / "etc/dpkg/dpkg.cfg.d/unsafe-io").write_text("force-unsafe-io\n")
        run(["chroot", str(root), "apt-get", "clean"], check=True)
        run(["tar", "-C", str(root), "-cf", f"{tmp}/base.tar", "."], check=True)
        os.replace(f"{tmp}/base.tar", tarball)
    return tarball


def torch_cpu_index(folder: Path) -> Path:
    """A PEP 503 index holding the local CPU build of torch, as the root will see it."""
    wheel = cpu_torch_wheel()
    page = folder / "simple" / "torch" / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f'<!DOCTYPE html><html><body><a href="file://{WHEELS}/{urllib.parse.quote(wheel.name)}">'
                    f"{wheel.name}</a></body></html>\n")
    return folder


def _env(values: dict[str, str]) -> list[str]:
    """A clean environment, as a container starts with."""
    return ["/usr/bin/env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8",
            *(f"{k}={v}" for k, v in values.items())]


def _chroot(root: Path, mounts: list[str], command: str, cwd: str, env: dict[str, str],
            drop_sys_admin: bool) -> list[str]:
    """`command` run by bash in `root`, in mount and PID namespaces of its own (as a container:
    it sees and signals its own processes only, whatever uids others use): /proc, /dev with a
    /dev/shm of its own, a read-only /sys (no cgroup tree, as in a container without
    CAP_SYS_ADMIN) and `mounts` (shell lines run first), then chroot, with CAP_SYS_ADMIN dropped
    from the bounding set if asked."""
    inside = ["chroot", str(root), *_env(env), "/bin/bash", "-c", f"cd {shlex.quote(cwd)} && {command}"]
    enter = shlex.join(["capsh", "--drop=cap_sys_admin", "--", "-c", f"exec {shlex.join(inside)}"]
                       if drop_sys_admin else inside)
    at = shlex.quote(str(root))
    # The namespace's init stays this shell, not the command (no PID 1 signal semantics for it).
    script = "\n".join(["set -e", *mounts, f"mount -t proc proc {at}/proc", f"mount --rbind /dev {at}/dev",
                        f"mount -t tmpfs -o nosuid,nodev,size=64m shm {at}/dev/shm",  # Docker's: its own, 64 MB
                        f"mount -t sysfs -o ro sysfs {at}/sys", "status=0", f"{enter} || status=$?", "exit $status"])
    return ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private", "--",
            "/bin/bash", "-c", script]


def _bind_ro(source: Path, root: Path, target: str) -> str:
    return f"mount -o bind,ro {shlex.quote(str(source))} {shlex.quote(str(root))}{target}"


@dataclass
class Run:
    returncode: int
    log: str
    seconds: float
    results: dict | None  # /autograder/results/results.json as left, None when there is none
    upper: Path  # what the run wrote (the overlay's upper layer)


@dataclass
class Image:
    folder: Path  # holds the built root (root/) and each run's overlay layers (runs/)
    build_log: str
    build_seconds: float

    @property
    def root(self) -> Path:
        return self.folder / "root"

    def venv_bytes(self) -> int:
        done = subprocess.run(["du", "-s", "--block-size=1", str(self.root / "autograder/venv")],
                              capture_output=True, text=True, check=True)
        return int(done.stdout.split()[0])

    def start(self, submission: dict[str, bytes], cwd: str = "/autograder", env: dict[str, str] | None = None,
              before: str = "", metadata: str | None = None, run_autograder: str | None = None,
              cgroup_procs: str | None = None, output: int = subprocess.PIPE) -> tuple[subprocess.Popen, Path]:
        """Start /autograder/run_autograder in a fresh container of the image with `submission`
        (relative path -> bytes) in /autograder/submission, `metadata` as submission_metadata.json,
        another bundle's `run_autograder` in place of the image's (bundles of the same course differ
        only there), the shell line `before` run first (as root, inside); in the cgroup whose procs
        file is `cgroup_procs` if given. Returns the process and the overlay's upper layer."""
        runs = self.folder / "runs"
        runs.mkdir(exist_ok=True)
        layers = Path(tempfile.mkdtemp(dir=runs))
        upper, work, merged = layers / "upper", layers / "work", layers / "merged"
        for folder in (upper, work, merged):
            folder.mkdir()
        for name, data in submission.items():
            path = upper / "autograder" / "submission" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (upper / "autograder").mkdir(exist_ok=True)
        if metadata is not None:
            (upper / "autograder" / "submission_metadata.json").write_text(metadata)
        if run_autograder is not None:
            (upper / "autograder" / "run_autograder").write_text(run_autograder)
            (upper / "autograder" / "run_autograder").chmod(0o755)
        mounts = [f"echo $$ > {cgroup_procs}"] if cgroup_procs else []
        mounts.append(f"mount -t overlay overlay -o lowerdir={self.root},upperdir={upper},workdir={work} "
                      f"{shlex.quote(str(merged))}")
        command = (f"{before} && " if before else "") + "exec /autograder/run_autograder"
        proc = subprocess.Popen(_chroot(merged, mounts, command, cwd, env or {}, drop_sys_admin=True),
                                stdout=output, stderr=subprocess.STDOUT if output is subprocess.PIPE else output,
                                text=True, start_new_session=True)
        return proc, upper

    def run(self, submission: dict[str, bytes], timeout: float = 600, **options) -> Run:
        started = time.monotonic()
        proc, upper = self.start(submission, **options)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        return Run(proc.returncode, log, time.monotonic() - started, results(upper), upper)

    def discard(self, upper: Path) -> None:
        shutil.rmtree(upper.parent, ignore_errors=True)


def results(upper: Path) -> dict | None:
    path = upper / "autograder" / "results" / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _unzip(bundle: Path, into: Path) -> None:
    """As unzip does: each member with the mode the zip gives it."""
    with zipfile.ZipFile(bundle) as z:
        for info in z.infolist():
            path = Path(z.extract(info, into))
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                path.chmod(mode & 0o7777)


class Build:
    """The image of `bundle` built in `folder`/root by the bundle's own setup.sh, in the background
    (minutes, mostly waiting on apt and pip): `result()` waits for it, `cancel()` stops it."""

    def __init__(self, folder: Path, bundle: Path, cache: Path):
        self.folder, self._lock, self._proc, self._cancelled = folder, threading.Lock(), None, False
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "build.log"  # every command's output
        self._outcome: Image | BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(bundle, cache), daemon=True)
        self._thread.start()

    def _spawn(self, command: list[str], check: bool = True) -> subprocess.CompletedProcess:
        """A command of the build, its output added to the log, in a session of its own so that
        cancel() stops all of it. CalledProcessError with the log's end if `check` and it failed."""
        with self._lock, open(self.log, "a") as log:
            if self._cancelled:
                raise RuntimeError("the image build was cancelled")
            self._proc = subprocess.Popen(command, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        returncode = self._proc.wait()
        if check and returncode != 0:
            raise subprocess.CalledProcessError(returncode, command[0], self.log.read_text()[-8000:])
        return subprocess.CompletedProcess(command, returncode)

    def _run(self, bundle: Path, cache: Path) -> None:
        try:
            self._outcome = self._build(bundle, cache)
        except BaseException as e:  # handed to whoever waits for the image
            self._outcome = e

    def _build(self, bundle: Path, cache: Path) -> Image:
        root = self.folder / "root"
        root.mkdir(parents=True)
        self._spawn(["tar", "-C", str(root), "-xf", str(base_image(cache, self._spawn))])
        _unzip(bundle, root / "autograder" / "source")
        index = torch_cpu_index(self.folder / "torch-cpu")
        points = {"/opt/pypi": PYPI, "/opt/wheels": WHEELS, "/opt/torch-cpu": index}
        for target in points:
            (root / target.lstrip("/")).mkdir(parents=True)
        mounts = [_bind_ro(source, root, target) for target, source in points.items()]
        # Gradescope's own steps around setup.sh: run_autograder copied into place, then setup.sh.
        command = ("cp /autograder/source/run_autograder /autograder/run_autograder && "
                   "chmod +x /autograder/run_autograder && bash /autograder/source/setup.sh")
        env = {"PIP_INDEX_URL": f"file://{PYPI}/simple", "AUTOGRADER_TORCH_INDEX": f"file://{TORCH_INDEX}"}
        started = time.monotonic()
        try:
            self._spawn(_chroot(root, mounts, command, "/autograder/source", env, drop_sys_admin=False))
        finally:
            for target in points:  # the emulated network's mount points are not part of the image
                with contextlib.suppress(OSError):  # still mounted: a cancelled build's are left
                    (root / target.lstrip("/")).rmdir()
        return Image(self.folder, self.log.read_text(), time.monotonic() - started)

    def result(self, timeout: float = 1800) -> Image:
        """The built image; the build's error (CalledProcessError with setup.sh's log) if it failed."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.cancel()
            raise TimeoutError(f"the image was not built in {timeout:.0f} s")
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._proc is not None and self._proc.poll() is None:
                os.killpg(self._proc.pid, signal.SIGKILL)


def build(folder: Path, bundle: Path, cache: Path, timeout: float = 1800) -> Image:
    """The image of `bundle`, built in `folder` (see Build)."""
    return Build(folder, bundle, cache).result(timeout)


@contextlib.contextmanager
def cpu_quota(cpus: float) -> Iterator[str]:
    """A cgroup allowing `cpus` CPUs (a CFS quota, as `docker run --cpus` sets); yields the file a
    process writes its pid to to join it. cgroup v1's cpu controller, else v2's cpu.max."""
    period = 100_000
    quota = int(cpus * period)
    v1 = Path("/sys/fs/cgroup/cpu")
    name = f"autograder-bench-{os.getpid()}"
    if (v1 / "cpu.cfs_quota_us").is_file():
        group = v1 / name
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
    else:
        group = Path("/sys/fs/cgroup") / name
        group.mkdir()
        (group / "cpu.max").write_text(f"{quota} {period}")
    try:
        yield str(group / "cgroup.procs")
    finally:
        for _ in range(50):  # the run's last processes may still be leaving
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
