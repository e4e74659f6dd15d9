"""How a worker process confines itself before any student code runs (Linux only).

Three levels, chosen once by the grader (sandbox.py) and applied in every worker:

- "namespaces": new mount, PID, IPC, network and UTS namespaces (and a user namespace when the
  grader is not root, or has no CAP_SYS_ADMIN). The worker's root is a fresh tmpfs holding only
  the allow-list, read-only: the interpreter's prefixes, the sys.path entries outside what must
  stay hidden, the system libraries, a minimal /etc and /dev; /tmp is a small private tmpfs. It
  runs as a uid of its own with no capabilities, as PID 1 of its namespace, so every process it
  starts dies with it.
- "uid": root without CAP_SYS_ADMIN (Docker, Gradescope). A uid of its own; Landlock, where the
  kernel has it, restricts reads to the same allow-list and writes to its scratch folder and
  denies TCP and signals outside; seccomp denies other sockets than AF_UNIX and SysV/POSIX IPC.
- "none": only rlimits, a scrubbed environment, and seccomp keeping it in its session.

Everything here runs in the forked child; failures raise ConfinementError with what failed.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import resource
import signal
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_LIBC.syscall.restype = ctypes.c_long

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWUTS
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
MS_REC, MS_PRIVATE = 1 << 14, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_KEEPCAPS, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 8, 24, 38
INSIDE_ID = 1000  # the worker's uid and gid as seen inside a user namespace
UID_BASE = 200_000  # a root grader's workers run as uids from UID_BASE up, a block of UID_BLOCK per grader
UID_BLOCK, UID_BLOCKS = 1 << 16, 64

# Per architecture: (seccomp audit arch, syscall numbers we use).
_ARCH = {
    "x86_64": (0xC000003E, {"pivot_root": 155, "seccomp": 317, "socket": 41, "shmget": 29, "msgget": 68,
                            "memfd_create": 319,
                            "semget": 64, "mq_open": 240, "setsid": 112, "setpgid": 109, "capset": 126,
                            "landlock_create_ruleset": 444, "landlock_add_rule": 445,
                            "landlock_restrict_self": 446}),
    "aarch64": (0xC00000B7, {"pivot_root": 41, "seccomp": 277, "socket": 198, "shmget": 194, "msgget": 186,
                             "memfd_create": 279,
                             "semget": 190, "mq_open": 180, "setsid": 157, "setpgid": 154, "capset": 91,
                             "landlock_create_ruleset": 444, "landlock_add_rule": 445,
                             "landlock_restrict_self": 446}),
}
ARCH, SYSCALLS = _ARCH.get(platform.machine(), (None, {}))


class ConfinementError(RuntimeError):
    """A step of the confinement failed; the message names it."""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise ConfinementError(f"{what}: {os.strerror(errno)}")


def _syscall(name: str, *args) -> int:
    if name not in SYSCALLS:
        raise ConfinementError(f"{name}: not supported on {platform.machine()}")
    return _LIBC.syscall(SYSCALLS[name], *args)


def _sys_ok(name: str, *args, what: str) -> None:
    _check(0 if _syscall(name, *args) >= 0 else -1, what)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_LIBC.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), flags,
                       data and data.encode()), f"mount {target}")


# ---- the allow-list --------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """What a worker may read: whole trees, minus what must stay hidden inside them (already
    split: `read` never contains a hidden path), and where it links."""
    read: tuple[str, ...]
    links: dict[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


SYSTEM_TREES = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libexec", "/usr/bin", "/usr/local/lib",
                "/lib", "/lib64", "/lib32", "/bin")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/nsswitch.conf",
             "/etc/mime.types")
CUDA_TREES = ("/sys", "/proc/driver/nvidia", "/usr/share/nvidia", "/etc/OpenCL", "/usr/local/cuda")


def _inside(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def _split(tree: str, hidden: list[str], links: dict[str, str]) -> list[str]:
    """`tree` as the fewest paths that cover it except the hidden paths inside it. A symbolic link
    met on the way is kept as a link (into `links`), never as a path to read: a rule or a bind
    mount on a link would open its target whole (a virtual environment's lib64 -> lib holds the
    grader's own package)."""
    inner = [h for h in hidden if _inside(h, tree)]
    if not inner:
        return [tree]
    if tree in inner or not os.path.isdir(tree) or os.path.islink(tree):
        return []
    parts = []
    for entry in sorted(os.listdir(tree)):
        path = os.path.join(tree, entry)
        if os.path.islink(path):
            links[path] = os.readlink(path)
        else:
            parts += _split(path, inner, links)
    return parts


def hidden_paths(protected: list[str]) -> list[str]:
    """What no worker may read: the grader's `protected` paths and this package (the checks may
    be installed inside it)."""
    return sorted({os.path.realpath(p) for p in (*protected, os.path.dirname(os.path.abspath(__file__)))})


def allow_list(python_paths: list[str], protected: list[str], cuda: bool = False) -> Plan:
    """The worker's view: Python's own trees and the system libraries, without the hidden paths
    (the course, the checks, the data, the output, this package). A path that contains a hidden
    one is split into its other entries, so what is hidden is never under anything readable."""
    hidden = hidden_paths(protected)
    links, trees = {}, set()
    for path in (*SYSTEM_TREES, *ETC_FILES, *python_paths, *(CUDA_TREES if cuda else ())):
        if not os.path.lexists(path):
            continue
        if os.path.islink(path) and os.path.dirname(path) in ("/", "/etc"):
            links[path] = os.readlink(path)  # /lib -> usr/lib on merged-/usr systems
            path = os.path.realpath(path)
        if os.path.exists(path):
            trees.add(os.path.realpath(path))
    # A tree holding the whole of a hidden path's ancestor (e.g. sys.path = the course folder)
    # is split; nested trees collapse into their outermost.
    outer = [t for t in sorted(trees) if not any(t != o and _inside(t, o) for o in trees)]
    read = tuple(p for tree in outer for p in _split(tree, hidden, links))
    return Plan(read=read, links=links, devices=tuple(d for d in Plan.devices if os.path.exists(d))
                + (tuple(f"/dev/{d}" for d in sorted(os.listdir("/dev")) if d.startswith("nvidia")) if cuda else ()))


# ---- level "namespaces" ----------------------------------------------------------------------

def unshare(userns: bool) -> None:
    """In the process that becomes the worker's parent: new namespaces for its next child."""
    _check(_LIBC.unshare(NAMESPACES | (CLONE_NEWUSER if userns else 0)), "unshare")


def map_ids(pid: int, outside_uid: int, outside_gid: int) -> None:
    """From the server: the worker's user namespace maps INSIDE_ID to a uid of its own (or, for an
    unprivileged grader, to the grader's own)."""
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(f"{INSIDE_ID} {outside_uid} 1")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(f"{INSIDE_ID} {outside_gid} 1")


def _bind(fd_path: str, target: str, writable: bool = False) -> None:
    if os.path.isdir(fd_path):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            open(target, "w").close()
    _mount(fd_path, target, None, MS_BIND | MS_REC)
    # A remount must keep the flags the kernel locked on the original (user namespaces).
    st = os.statvfs(fd_path)
    locked = ((MS_NOSUID if st.f_flag & os.ST_NOSUID else 0) | (MS_NODEV if st.f_flag & os.ST_NODEV else 0)
              | (MS_NOEXEC if st.f_flag & os.ST_NOEXEC else 0))
    _mount(None, target, None, MS_REMOUNT | MS_BIND | (0 if writable else MS_RDONLY) | MS_NOSUID | locked)


def build_root(plan: Plan, sources: dict[str, int], scratch_bytes: int, uid: int, cuda: bool) -> None:
    """In PID 1 of the new namespaces: a fresh root with only the allow-list, then pivot into it.
    `sources` are the allow-list's paths opened beforehand (O_PATH), because the new root is
    mounted over /tmp, where they may lie."""
    new = "/tmp"
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    # The scratch /tmp first: a Python tree that lives under /tmp is bound on top of it.
    os.makedirs(new + "/tmp")
    _mount("tmpfs", new + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch_bytes},mode=1777")
    for path, fd in sources.items():
        _bind(f"/proc/self/fd/{fd}", new + path)
        os.close(fd)
    # The folders made above to hold such a tree lie in the writable scratch, and in a user
    # namespace the worker owns them: each is bound on itself read-only, or a student could
    # write files beside the tree that look like the course's (/tmp/checkout/course.toml).
    for entry in os.listdir(new + "/tmp"):
        _mount(f"{new}/tmp/{entry}", f"{new}/tmp/{entry}", None, MS_BIND | MS_REC)
        _mount(None, f"{new}/tmp/{entry}", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for link, target in plan.links.items():
        if not os.path.lexists(new + link):
            os.makedirs(os.path.dirname(new + link), exist_ok=True)
            os.symlink(target, new + link)
    os.makedirs(new + "/etc", exist_ok=True)
    with open(new + "/etc/passwd", "w") as f:
        f.write(f"student:x:{uid}:{uid}:student:/tmp:/bin/sh\n")
    with open(new + "/etc/group", "w") as f:
        f.write(f"student:x:{uid}:\n")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{new}/dev/{name}")
    for folder in ("/proc", "/dev/shm", "/.old"):
        os.makedirs(new + folder, exist_ok=True)
    if cuda:  # the driver reads /proc/driver/nvidia: a whole proc, not only this PID namespace's
        _mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    else:
        _mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "subset=pid")
    _mount("tmpfs", new + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    _sys_ok("pivot_root", new.encode(), (new + "/.old").encode(), what="pivot_root")
    os.chdir("/")
    _check(_LIBC.umount2(b"/.old", 2), "detach the old root")  # MNT_DETACH
    os.rmdir("/.old")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _check(_LIBC.sethostname(b"autograder", 10), "hostname")


def drop_capabilities() -> None:
    """No capability left, none to regain (the bounding set is empty)."""
    for cap in range(64):
        _LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = struct.pack("=Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = ctypes.create_string_buffer(24)
    _sys_ok("capset", ctypes.c_char_p(header), data, what="drop capabilities")


# ---- level "uid": Landlock and seccomp --------------------------------------------------------

def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where there is none."""
    if "landlock_create_ruleset" not in SYSCALLS:
        return 0
    version = _syscall("landlock_create_ruleset", None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    return max(int(version), 0)


def landlock_ruleset(plan: Plan, writable: list[str]) -> int | None:
    """A Landlock ruleset (its fd; None where the kernel has none): reads only beneath the
    allow-list, writes only beneath `writable`, no TCP, no signals or abstract sockets outside its
    own domain. Made while the paths can still be opened; enforced by `landlock_restrict`."""
    abi = landlock_abi()
    if abi < 1:
        return None
    fs_all = (1 << (13 if abi == 1 else 14 if abi == 2 else 15 if abi < 5 else 16)) - 1
    read = 0b1101  # EXECUTE | READ_FILE | READ_DIR
    file_rights = 0b111 | ((1 << 14) if abi >= 3 else 0)  # what a rule on a file may grant
    attr = struct.pack("=QQQ", fs_all, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = _syscall("landlock_create_ruleset", ctypes.c_char_p(attr[:size]), size, 0)
    if ruleset < 0:
        raise ConfinementError(f"landlock ruleset: {os.strerror(ctypes.get_errno())}")
    rules = [(p, read) for p in plan.read] + [(d, 0b110) for d in plan.devices] + [(w, fs_all) for w in writable]
    for path, rights in rules:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            if not os.path.isdir(path):
                rights &= file_rights
            rule = struct.pack("=Qi", rights, fd)
            _sys_ok("landlock_add_rule", ruleset, 1, ctypes.c_char_p(rule), 0, what=f"landlock rule for {path}")
        finally:
            os.close(fd)
    return ruleset


def landlock_restrict(ruleset: int) -> None:
    try:
        _sys_ok("landlock_restrict_self", ruleset, 0, what="landlock")
    finally:
        os.close(ruleset)


def seccomp(unix_sockets_only: bool, keep_session: bool) -> None:
    """A filter: no memory outside files and processes the limits see (memfd, SysV shared
    memory) and no SysV or POSIX message IPC; with `unix_sockets_only`, no other sockets than
    AF_UNIX (where there is no network namespace); with `keep_session`, no setsid/setpgid, so
    that every process stays in the worker's session."""
    if ARCH is None:
        raise ConfinementError(f"seccomp: not supported on {platform.machine()}")
    EPERM = 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM
    ALLOW, KILL = 0x7FFF0000, 0x80000000  # SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS
    denied = [SYSCALLS[n] for n in ("shmget", "msgget", "semget", "mq_open", "memfd_create")]
    if keep_session:
        denied += [SYSCALLS["setsid"], SYSCALLS["setpgid"]]

    def op(code, jt, jf, k):
        return struct.pack("=HBBI", code, jt, jf, k)
    LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JSET|K, BPF_RET|K
    prog = [op(LD, 0, 0, 4), op(JEQ, 1, 0, ARCH), op(RET, 0, 0, KILL), op(LD, 0, 0, 0)]
    if ARCH == 0xC000003E:
        prog += [op(JSET, 0, 1, 0x40000000), op(RET, 0, 0, KILL)]  # the x32 ABI, another way in
    for number in denied:
        prog += [op(JEQ, 0, 1, number), op(RET, 0, 0, EPERM)]
    if unix_sockets_only:  # socket(): AF_UNIX (args[0] == 1, its low word at offset 16) only
        prog += [op(JEQ, 0, 3, SYSCALLS["socket"]), op(LD, 0, 0, 16), op(JEQ, 1, 0, 1), op(RET, 0, 0, EPERM)]
    prog += [op(RET, 0, 0, ALLOW)]
    code = b"".join(prog)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("=HxxxxxxQ", len(code) // 8, ctypes.addressof(buffer))
    _sys_ok("seccomp", 1, 0, ctypes.c_char_p(fprog), what="seccomp")  # SECCOMP_SET_MODE_FILTER


# ---- every level -----------------------------------------------------------------------------

def die_with_parent(expected_parent: int | None) -> None:
    """SIGKILL when the parent dies. Set after every change of credentials (which clears it), and
    checked against a parent that died before it was set."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)


def become(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def finish(file_bytes: int, cpu_seconds: int, processes: int | None) -> None:
    """Limits and flags every level ends with; `processes` None where the limit would count the
    grader's own processes too (the same uid, no user namespace)."""
    for name, value in (("RLIMIT_FSIZE", file_bytes), ("RLIMIT_CORE", 0), ("RLIMIT_NOFILE", 256),
                        ("RLIMIT_CPU", cpu_seconds)):
        resource.setrlimit(getattr(resource, name), (value, value))
    if processes is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    _LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # nobody may ptrace it or open its /proc/<pid>/mem


def scrub_environment(home: str, threads: int) -> None:
    os.environ.clear()
    os.environ.update({"HOME": home, "TMPDIR": home, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
                       "OMP_NUM_THREADS": str(threads), "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/.matplotlib"})


def python_paths() -> list[str]:
    """The interpreter's own trees: its prefixes and the folders on sys.path, never the folder it
    was started from (sys.path[0], unless Python was told not to add it: -I, -P), which may be
    anything (/, /autograder, a course checkout) and is no part of Python."""
    import sys

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(sys.executable).parent), os.path.realpath(sys.executable)}
    safe = getattr(sys.flags, "safe_path", False) or sys.flags.isolated
    paths.update(p for p in (sys.path if safe else sys.path[1:]) if p and os.path.isabs(p) and os.path.isdir(p))
    return sorted(paths)


# ---- a worker, from fork to the first line of student code -----------------------------------

@dataclass(frozen=True)
class Level:
    """How workers are confined: "namespaces", "uid" or "none"."""
    name: str
    userns: bool = False
    landlock: int = 0  # the Landlock ABI the "uid" level uses; 0: none

    def describe(self) -> str:
        if self.name == "namespaces":
            who = ", a uid of its own per worker" if os.geteuid() == 0 else ", running as your own uid"
            return ("namespaces: mount, PID, IPC, network and UTS namespaces, a read-only allow-list root"
                    + (", in a user namespace" if self.userns else "") + who)
        if self.name == "uid":
            return ("uid: a uid of its own per worker, seccomp, "
                    + (f"Landlock (ABI {self.landlock}) allow-list" if self.landlock else
                       "the course, data, submissions and output made unreadable to it (no Landlock here: "
                       "whatever else every user may read on this machine, a worker may read too)"))
        return "none: no isolation (--no-sandbox); student code can read and change what the grader can"


@dataclass(frozen=True)
class Settings:
    """Everything a worker is confined with, decided once by the grader."""
    level: Level
    plan: Plan
    file_bytes: int
    cpu_seconds: int
    processes: int
    scratch_bytes: int
    threads: int
    scratch_parent: str | None = None  # where "uid" and "none" workers get their folder


def worker_folder(settings: Settings, pid: int) -> str | None:
    """The scratch folder of a "uid" or "none" worker (at "namespaces" it is a private tmpfs)."""
    return None if settings.level.name == "namespaces" else os.path.join(settings.scratch_parent, str(pid))


class Uids:
    """The uids one grader's workers run as. A root grader holds a block of them, claimed with a
    lock file that this process, and the children it forks (the janitor), hold open: two graders
    on one machine (two TAs, two tasks of a job array) never share a uid, so neither can signal,
    kill or clean up after the other's workers. An unprivileged grader has only its own uid."""

    FOLDERS = ("/run", "/var/run", "/var/tmp", "/tmp")

    def __init__(self, first: int, size: int, lock: int | None = None):
        self.first, self.size, self.lock, self.count = first, size, lock, 0

    @classmethod
    def claim(cls) -> "Uids":
        if os.geteuid() != 0:
            return cls(os.geteuid(), 1)
        folder = cls._folder()
        for block in range(UID_BLOCKS):
            fd = os.open(f"{folder}/block-{block}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            first = UID_BASE + block * UID_BLOCK
            if cls._in_use(first, first + UID_BLOCK):
                # A grader in another container that shares this PID namespace (Apptainer, docker
                # --pid=host) locks its blocks in its own /run: its workers show they are taken.
                os.close(fd)
                continue
            return cls(first, UID_BLOCK, fd)
        raise ConfinementError(f"all {UID_BLOCKS} blocks of worker uids are held by other graders ({folder})")

    @classmethod
    def _folder(cls) -> str:
        """A folder of root's alone for the lock files (none that another user could have made)."""
        for parent in cls.FOLDERS:
            if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
                continue
            folder = os.path.join(parent, "autograder-uids")
            try:
                os.mkdir(folder, 0o700)
            except FileExistsError:
                pass
            st = os.lstat(folder)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
                raise ConfinementError(f"{folder} is not root's alone (mode {stat.S_IMODE(st.st_mode):o}, "
                                       f"owner {st.st_uid}): remove it")
            return folder
        raise ConfinementError(f"no folder for the worker uids' lock files ({', '.join(cls.FOLDERS)})")

    @staticmethod
    def _in_use(first: int, last: int) -> bool:
        """Whether a process this one can see runs as a uid in [first, last)."""
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and first <= os.stat(f"/proc/{entry}").st_uid < last:
                    return True
            except OSError:
                pass  # gone meanwhile
        return False

    def next(self) -> int:
        """A uid for the next worker (a block is used round: a uid comes back after its worker
        was cleaned up, 65536 workers later)."""
        uid = self.first + self.count % self.size
        self.count += 1
        return uid

    def release(self) -> None:
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None


def fork_worker(settings: Settings, uid: int, run, keep: tuple[int, ...] = (), output: int | None = None,
                cgroup: tuple[str, ...] = ()) -> tuple[int, int | None]:
    """Fork a worker confined by `settings`, as `uid` (from the grader's Uids), that calls
    `run(error)` once confined (`error`: why confinement failed, or None) and exits. It joins
    `cgroup` (cgroup.procs files) first, keeps only the file descriptors in `keep`, with `output`
    as its stdout and stderr and /dev/null as stdin. Returns its first pid and its uid."""
    to_parent_r, to_parent_w = os.pipe()
    to_child_r, to_child_w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server lets the kernel reap; we wait
            if output is not None:
                os.dup2(output, 1)
                os.dup2(output, 2)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
            held = {0, 1, 2, to_parent_w, to_child_r, *keep}
            for fd in range(3, max(held) + 1):
                if fd not in held:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            os.closerange(max(held) + 1, 1 << 16)

            def handshake() -> None:  # the parent writes the user namespace's maps meanwhile
                os.write(to_parent_w, b"u")
                if os.read(to_child_r, 1) != b"k":
                    raise ConfinementError("the user namespace could not be mapped")
            try:
                # Where the grader has no cgroup of its own (a Gradescope container), the kernel's
                # out-of-memory killer must choose a worker, never the grader.
                try:
                    with open("/proc/self/oom_score_adj", "w") as f:
                        f.write("1000")
                except OSError:
                    pass  # a proc that cannot be written to: the grader's own limits still hold
                for procs in cgroup:  # before anything else, so that everything it does is counted
                    with open(procs, "w") as f:
                        f.write("0")
                _confine(settings, uid, parent, handshake)
                error = None
            except (ConfinementError, OSError) as e:
                error = str(e)
            os.close(to_parent_w)
            os.close(to_child_r)
            run(error)
            status = 0
        finally:
            os._exit(status)
    os.close(to_parent_w)
    os.close(to_child_r)
    try:
        if settings.level.userns and os.read(to_parent_r, 1) == b"u":
            try:
                map_ids(pid, uid, uid if os.geteuid() == 0 else os.getegid())
                os.write(to_child_w, b"k")
            except OSError:
                pass  # the child reads end of file and says so
    finally:
        os.close(to_parent_r)
        os.close(to_child_w)
    return pid, (uid if settings.level.name != "none" else None)


def _confine(settings: Settings, uid: int, parent: int, handshake) -> None:
    level = settings.level
    os.setsid()
    if level.name == "namespaces":
        unshare(level.userns)
        if level.userns:
            handshake()
        die_with_parent(parent)
        child = os.fork()
        if child:  # outside, the parent of PID 1 holds nothing and exits with it
            os.closerange(3, 1 << 16)
            _, status = os.waitpid(child, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        os.setsid()  # a session of its own: kill(0) must not reach the parent outside
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        # Opened while still the grader's own uid, which may be the only one allowed to reach them.
        sources = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in (*settings.plan.read, *settings.plan.devices)}
        if level.userns:  # then be the mapped uid inside, so that what it creates has an owner
            _LIBC.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
            os.setresgid(INSIDE_ID, INSIDE_ID, INSIDE_ID)
            os.setresuid(INSIDE_ID, INSIDE_ID, INSIDE_ID)
        build_root(settings.plan, sources, settings.scratch_bytes, INSIDE_ID if level.userns else uid,
                   cuda=any(d.startswith("/dev/nvidia") for d in settings.plan.devices))
        if level.userns:
            drop_capabilities()
        else:
            become(uid, uid)
        die_with_parent(None)  # the parent is outside this PID namespace: getppid() says 0
        home = "/tmp"
        finish(settings.file_bytes, settings.cpu_seconds, settings.processes)
        seccomp(unix_sockets_only=False, keep_session=False)
    else:
        home = worker_folder(settings, os.getpid())
        os.mkdir(home, 0o700)
        if level.name == "uid":
            os.chown(home, uid, uid)
            ruleset = landlock_ruleset(settings.plan, [home]) if level.landlock else None
            become(uid, uid)
            die_with_parent(parent)
            finish(settings.file_bytes, settings.cpu_seconds, settings.processes)
            if ruleset is not None:
                landlock_restrict(ruleset)
        else:
            die_with_parent(parent)
            finish(settings.file_bytes, settings.cpu_seconds, None)
        seccomp(unix_sockets_only=True, keep_session=level.name == "none")
    os.chdir(home)
    scrub_environment(home, settings.threads)
