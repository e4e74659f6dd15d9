"""The sandbox holds at every level the grader supports: as root (namespaces), as an unprivileged
user (namespaces in a user namespace), and as root without CAP_SYS_ADMIN (a uid of its own, as
in Docker or Gradescope).

For each level, one class of hostile submissions is graded through the command line, run as that
user; each test then reads that run's results. An attack "gains" when its unit scores: a thief's
softmax is right only if it could read nothing it must not, a forger's only if it could write
nothing of the grader's, a reader's only if nothing another student left reached it.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (FASHION_IDX, LEVELS, ROOT, code, data_environment, grade_as, grade_class, in_background,
                      open_modes, prepared_datasets, reference_code, shared_folder, shared_root, write_student)

SOFTMAX = reference_code("softmax")
FULL = {"Linear": 15, "softmax": 15, "one_layer_net": 15, "train_online": 15, "template_update": 15,
        "train_minibatch": 25}
MARK = "autograder-test-4242"  # a daemon's command line, to find it afterwards
# What the forger and the planter write; their code builds it at run time, so that their source,
# which the review queue shows a TA, never holds it: found in an output, it was written there.
FORGED = "FORGED-BY-A-WORKER"
PLANTED = "PLANTED-BY-A-WORKER"


def honest_softmax_if(condition: str, before: str = "") -> str:
    """The reference softmax, but it returns x (wrong) when `condition` holds at call time."""
    return code(before) + SOFTMAX.replace("def softmax(x, dim=-1):", f"def softmax(x, dim=-1):\n    if {condition}:\n"
                                          "        return x", 1)


def thief(targets: list[str]) -> str:
    return honest_softmax_if("_found", f"""
        import glob, os
        _found = []
        for _pattern in {targets!r}:
            for _path in glob.glob(_pattern, recursive=True)[:500] or [_pattern]:
                if _path.startswith(f"/proc/{os.getpid()}/"):
                    continue  # its own environment is no secret
                try:
                    if os.path.isdir(_path):
                        if os.listdir(_path):
                            _found.append(_path)
                    else:
                        with open(_path, "rb") as _f:
                            if _f.read(64):
                                _found.append(_path)
                except OSError:
                    pass
        print("readable:", _found)
        """)


def forger(targets: list[str]) -> str:
    return honest_softmax_if("_written", f"""
        import os
        _written = []
        for _path in {targets!r}:
            try:
                with open(_path, "a") as _f:
                    _f.write({FORGED[:4]!r} + {FORGED[4:]!r})
                _written.append(_path)
            except OSError:
                pass
        print("written:", _written)
        """)


PERSIST_WRITE = code("""
    import ctypes, os
    for _path in ("/tmp/left-by-a", "/var/tmp/left-by-a", "/dev/shm/left-by-a", "/run/lock/left-by-a", "left-by-a"):
        try:
            with open(_path, "w") as _f:
                _f.write("secret")
            os.chmod(_path, 0o666)
        except OSError:
            pass
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
        _id = _libc.shmget(0x4242, 4096, 0o1666)  # IPC_CREAT | 0666
        if _id >= 0:
            _libc.shmat.restype = ctypes.c_void_p
            ctypes.memmove(_libc.shmat(_id, None, 0), b"secret", 6)
    except Exception:
        pass
    """) + SOFTMAX
PERSIST_READ = honest_softmax_if("_seen()", """
    import ctypes, functools, glob, os, time
    @functools.lru_cache(maxsize=None)  # once a worker: its lab's time budget is the reference's
    def _seen():
        for _ in range(30):  # the writer may be graded at the same time, in the other job
            if any(glob.glob(p) for p in ("/tmp/left-by-a", "/var/tmp/left-by-a", "/dev/shm/left-by-a",
                                           "/run/lock/left-by-a", "/tmp/*/left-by-a")):
                return True
            _libc = ctypes.CDLL(None, use_errno=True)
            if _libc.shmget(0x4242, 0, 0) >= 0:
                return True
            time.sleep(0.1)
        return False
    """)
KILLER = code("""
    import os, signal
    for _target in (lambda: os.kill(-1, signal.SIGKILL), lambda: os.killpg(0, signal.SIGKILL),
                    lambda: os.kill(os.getppid(), signal.SIGKILL)):
        try:
            _target()
        except OSError:
            pass
    """) + SOFTMAX
DAEMON = code(f"""
    import os, sys
    if os.fork() == 0:
        try:
            os.setsid()
        except OSError:
            pass
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", "{MARK}"])
        os._exit(0)
    """) + SOFTMAX
PLANTER = code(f"""
    import os, signal
    for _folder in (os.getcwd(), os.path.expanduser("~"), "/tmp", "/"):
        try:
            os.makedirs(os.path.join(_folder, "autograder"), exist_ok=True)
            for _name in ("__init__.py", "worker.py", "harness.py"):
                with open(os.path.join(_folder, "autograder", _name), "w") as _f:
                    _f.write("print(%r)\\nraise SystemExit(%r)\\n" % (({PLANTED[:4]!r} + {PLANTED[4:]!r},) * 2))
        except OSError:
            pass
    try:
        os.kill(os.getppid(), signal.SIGKILL)  # so that the server restarts, if it can
    except OSError:
        pass
    """) + SOFTMAX
HONEST_PRINTER = code("""
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm
    def softmax(x, dim=-1):
        print("input:", x)
        for _ in tqdm(range(3), desc="thinking"):
            pass
        fig, ax = plt.subplots()
        ax.plot(x.flatten().tolist())
        plt.close(fig)
        e = torch.exp(x - x.amax(dim=dim, keepdim=True))
        return e / e.sum(dim=dim, keepdim=True)
    """)
HONEST_TRAINER = reference_code("train_online").replace("    for step in range(n_iter):", """\
    from tqdm.auto import tqdm
    print("training on", data.shape, data.dtype)
    for step in tqdm(range(n_iter)):""")
DISK_FILLER = code("""
    import os
    for _i in range(16):  # 16 x 64 MiB: a gigabyte, in the scratch space every level gives it
        with open(f"filler-{_i}", "wb") as _f:
            for _ in range(64):
                _f.write(b"x" * 2**20)
    """) + SOFTMAX
# The run's secret is 32 hex digits and seeds every input of the checks; the class order renames
# the classes of the training labels. Neither may be anywhere a worker can walk to.
SECRET_SEEKER = honest_softmax_if("_found", """
    import gc, re, sys, torch
    _PLANTED = "0123456789abcdef" * 2  # looks like the secret: proves that the walk would find one
    _hex = re.compile(r"^[0-9a-f]{32}$")
    def _look(value, found, seen, depth=0):
        if id(value) in seen or depth > 4:
            return
        seen.add(id(value))
        if isinstance(value, str):
            if _hex.match(value):
                found.add(value)
        elif isinstance(value, torch.Tensor):
            if value.numel() == 10 and not value.is_floating_point() and \\
                    sorted(value.flatten().tolist()) == list(range(10)) and value.flatten().tolist() != list(range(10)):
                found.add(f"a class order {value.tolist()}")
        elif isinstance(value, (list, tuple, set, frozenset)):
            if len(value) == 10 and all(isinstance(v, int) for v in value) and sorted(value) == list(range(10)) \\
                    and list(value) != list(range(10)):
                found.add(f"a class order {list(value)}")
            for v in list(value)[:10000]:
                _look(v, found, seen, depth + 1)
        elif isinstance(value, dict):
            for k, v in list(value.items())[:10000]:
                _look(k, found, seen, depth + 1)
                _look(v, found, seen, depth + 1)
        elif hasattr(value, "__dict__") and not isinstance(value, type(sys)):
            _look(vars(value), found, seen, depth + 1)
    _found, _seen = set(), set()
    _frame = sys._getframe()
    while _frame is not None:
        _look(_frame.f_locals, _found, _seen)
        _frame = _frame.f_back
    for _object in gc.get_objects():
        _look(_object, _found, _seen)
    for _module in list(sys.modules.values()):
        _look(getattr(_module, "__dict__", {}), _found, _seen)
    _found.discard(_PLANTED) if _PLANTED in _found else _found.add("the planted secret was not found: the walk is blind")
    print("found:", sorted(_found))
    """)
SLOW = "import time\ndef softmax(x, dim=-1):\n    time.sleep({})\n" + SOFTMAX.split("\n", 1)[1]
ATTACKS = {
    "disk_filler": (["lab02"], {"softmax": DISK_FILLER}),
    "secret_seeker": (["lab02"], {"softmax": SECRET_SEEKER}),
    "slow_4s": (["lab02"], {"softmax": SLOW.format(4)}),
    "slow_55s": (["lab02"], {"softmax": SLOW.format(55)}),
    "exit_in_call": (["lab02"], {"softmax": "import sys\ndef softmax(x, dim=-1):\n    sys.exit(3)\n"}),
    "os_exit_at_import": (["lab02", "lab03"], {"softmax": "import os\nos._exit(1)\n" + SOFTMAX}),
    "sleeper": (["lab02", "lab03"], {"softmax": "import time\ntime.sleep(1000)\n" + SOFTMAX}),
    "spinner": (["lab02"], {"softmax": "def softmax(x, dim=-1):\n    while True:\n        pass\n"}),
    # 20 GiB, a piece at a time, each filled by the kernel in one call and given time to be seen.
    "memory_hog": (["lab02"], {"softmax": code("""
        import mmap, time
        def softmax(x, dim=-1):
            hoard = []
            for _ in range(80):
                hoard.append(mmap.mmap(-1, 2**28, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE))
                time.sleep(0.3)
            return x
        """)}),
    "fork_flood": (["lab02"], {"softmax": code("""
        import os, time
        def softmax(x, dim=-1):
            for _ in range(300):  # bounded: if the sandbox failed, the machine still survives
                try:
                    if os.fork() == 0:
                        time.sleep(30)
                        os._exit(0)
                except OSError:
                    break
            return x
        """)}),
    "hidden_cpu": (["lab02"], {"softmax": code("""
        import signal, subprocess
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reaped by the kernel: their CPU time counted nowhere
        def softmax(x, dim=-1):
            while True:
                subprocess.Popen(["sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"]).wait()
        """)}),
    "memfd_hog": (["lab02"], {"softmax": code("""
        import os
        _held = []
        def softmax(x, dim=-1):
            for _ in range(60):  # 60 x 63 MiB outside the processes' own memory
                fd = os.memfd_create("hoard")
                os.ftruncate(fd, 63 * 2**20)
                os.write(fd, b"x" * (63 * 2**20))
                _held.append(fd)
            return x
        """)}),
    "forged_frames": (["lab02"], {"softmax": code("""
        import json, os, stat, struct
        def _frame(message):
            header = json.dumps({"body": message, "tensors": []}).encode()
            body = struct.pack(">I", len(header)) + header
            return struct.pack(">Q", len(body)) + body
        for _fd in range(3, 64):  # tell the grader its sandbox or the provided cells failed
            try:
                if stat.S_ISSOCK(os.fstat(_fd).st_mode):
                    os.write(_fd, _frame({"$type": "Confined", "error": "FORGED sandbox failure"}))
                    os.write(_fd, _frame({"$type": "SetupDone", "error": "FORGED setup failure"}))
            except OSError:
                pass
        """) + SOFTMAX}),
    "print_flood": (["lab02"], {"softmax": code("""
        def softmax(x, dim=-1):
            print("x" * (200 * 2**20))
            e = torch.exp(x - x.amax(dim=dim, keepdim=True))
            return e / e.sum(dim=dim, keepdim=True)
        """)}),
    "channel_garbage": (["lab02"], {"softmax": code("""
        import os, stat
        def softmax(x, dim=-1):
            for fd in range(3, 64):  # whatever socket it can find: the channel to the grader
                try:
                    if stat.S_ISSOCK(os.fstat(fd).st_mode):
                        os.write(fd, (12).to_bytes(8, "big") + b"not a reply!")
                except OSError:
                    pass
            return x
        """)}),
    "killer": (["lab02"], {"softmax": KILLER}),
    "daemon": (["lab02"], {"softmax": DAEMON}),
    "planter": (["lab02"], {"softmax": PLANTER}),
    "persist_a_writer": (["lab02"], {"softmax": PERSIST_WRITE}),
    "persist_b_reader": (["lab02"], {"softmax": PERSIST_READ}),
    "honest_printer": (["lab02", "lab04"], {"softmax": HONEST_PRINTER, "train_online": HONEST_TRAINER}),
}


# A TCP server on the loopback, made when the classes are: no worker may reach it.
LISTENER: list[socket.socket] = []
RUNS: dict = {}
EARLY = 0  # first into the background: most of its time is waiting out sleepers and hangs


def start_early(config) -> None:
    """The class, graded at every level at once in the background (tests/conftest.py)."""
    if not RUNS:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        LISTENER.append(server)
        config.add_cleanup(server.close)
        RUNS.update({level: in_background(grade_level, level) for level in LEVELS})


@pytest.fixture(scope="module")
def listener(request):
    start_early(request.config)
    return LISTENER[0]


def build_class(root: Path, listener_port: int, out: Path) -> Path:
    class_dir = root / "class"
    write_student(class_dir, "reference")
    for student, (labs, replaced) in ATTACKS.items():
        write_student(class_dir, student, labs, replaced)
    secrets = [str(ROOT / "source" / "**" / "*.ipynb"), str(ROOT / ".git" / "config"),
               str(ROOT / "autograder" / "checks" / "*.py"), str(FASHION_IDX / "t10k-labels-idx1-ubyte.gz"),
               data_environment()["AUTOGRADER_DATA"] + "/**/*.npz", str(class_dir / "reference" / "*.ipynb"),
               str(out / "*"), "/root/*", "/home/*", "/proc/[0-9]*/environ"]
    write_student(class_dir, "thief", ["lab02"], {"softmax": thief(secrets)})
    write_student(class_dir, "forger", ["lab02"], {"softmax": forger(
        [str(out / "grades.csv"), str(out / "gradebook.sqlite"), str(out / "reference" / "results.json"),
         str(ROOT / "course.toml"), str(class_dir / "reference" / "softmax_exercise.ipynb")])})
    write_student(class_dir, "network", ["lab02"], {"softmax": honest_softmax_if("_reached()", f"""
        import socket
        def _reached():
            try:
                socket.create_connection(("127.0.0.1", {listener_port}), timeout=2).sendall(b"leaked")
                return True
            except OSError:
                return False
        """)})
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    return class_dir


def grade_level(level: str) -> dict:
    """The attack class graded at `level` through the command line, as that user."""
    open_modes()
    root = shared_root() / f"sandbox-{level}"
    root.mkdir()
    out = shared_folder(root / "out")
    class_dir = build_class(root, LISTENER[0].getsockname()[1], out)
    started = time.monotonic()
    # --min-cpu 5: the spinners burn every CPU second they are allowed, at every level. --memory-gib 2:
    # a worker's page faults cost up to 2.4 s of CPU a GiB on some kernels, and the memory hog must
    # meet its memory limit before its CPU limit.
    done = grade_class(class_dir, out, "-j", "2", "--min-wall", "20", "--min-cpu", "5", "--memory-gib", "2",
                       level=level, quiet=False)
    with open(out / "grades.csv") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return {"level": level, "rows": rows, "out": out, "stderr": done.stderr, "seconds": time.monotonic() - started,
            "datasets": prepared_datasets()}


@pytest.fixture(scope="module", params=list(LEVELS))
def graded(request, listener):
    return RUNS[request.param].result()


def score(graded, student: str, unit: str) -> float:
    value = graded["rows"][student][unit]
    return float(value) if value else 0.0


def behaves(graded, student: str, unit: str) -> bool:
    """Whether every check of `unit` but its rule checks passed: an attack that imports what the
    course does not allow fails those and is flagged, but gains only if its unit still works."""
    db = sqlite3.connect(graded["out"] / "gradebook.sqlite")
    try:
        passed, count = db.execute("SELECT SUM(passed), COUNT(*) FROM checks WHERE student = ? AND unit = ? "
                                   "AND rule = 0", (student, unit)).fetchone()
    finally:
        db.close()
    return count > 0 and passed == count


def messages(graded, student: str) -> str:
    data = json.loads((graded["out"] / student / "results.json").read_text())
    return " | ".join(t["output"] for t in data["tests"] if t["status"] == "failed")


def test_the_level_is_the_one_expected_and_printed(graded):
    expected = {"root": "sandbox: namespaces", "unprivileged": "sandbox: namespaces", "no_sys_admin": "sandbox: uid"}
    assert expected[graded["level"]] in graded["stderr"]
    if graded["level"] == "unprivileged":
        assert "user namespace" in graded["stderr"]


def test_reference_gets_full_marks(graded):
    row = graded["rows"]["reference"]
    assert {u: float(row[u]) for u in FULL} == FULL and row["status"] == "ok", messages(graded, "reference")


def test_printing_plotting_and_progress_bars_cost_nothing(graded):
    assert score(graded, "honest_printer", "softmax") == 15, messages(graded, "honest_printer")
    assert score(graded, "honest_printer", "train_online") == 15, messages(graded, "honest_printer")
    assert "review" not in graded["rows"]["honest_printer"]["status"]


def test_a_worker_reads_nothing_of_the_course_the_data_the_output_or_other_students(graded):
    assert behaves(graded, "thief", "softmax"), messages(graded, "thief")


def test_a_worker_writes_nothing_of_the_grader(graded):
    assert behaves(graded, "forger", "softmax"), messages(graded, "forger")
    assert FORGED not in (ROOT / "course.toml").read_text()
    for path in graded["out"].rglob("*"):
        assert not path.is_file() or FORGED.encode() not in path.read_bytes(), path


def test_nothing_a_student_leaves_reaches_another(graded):
    # Both reach for SysV shared memory through ctypes, which also fails their rule checks.
    for student in ("persist_a_writer", "persist_b_reader"):
        assert behaves(graded, student, "softmax"), messages(graded, student)
        assert "review: softmax uses import ctypes" in graded["rows"][student]["status"]
    leftovers = [p for p in ("/tmp/left-by-a", "/var/tmp/left-by-a", "/dev/shm/left-by-a", "/run/lock/left-by-a")
                 if os.path.exists(p)]
    assert leftovers == []


def test_no_network(graded, listener):
    assert behaves(graded, "network", "softmax"), messages(graded, "network")
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_killing_everything_it_can_harms_no_one_else(graded):
    # Whether the killer survives its own kill(-1) depends on the level; no one else is harmed.
    assert graded["rows"]["reference"]["total"] == "100"
    assert behaves(graded, "daemon", "softmax"), messages(graded, "daemon")


@pytest.mark.alone
def test_a_daemon_does_not_outlive_its_worker(graded):
    book = graded["out"] / "gradebook.sqlite"
    assert book.is_file()
    left = [p for p in os.listdir("/proc") if p.isdigit() and MARK in _cmdline(p)]
    assert left == []


def test_a_planted_module_never_runs(graded):
    assert behaves(graded, "planter", "softmax"), messages(graded, "planter")
    for path in graded["out"].rglob("*"):
        assert not path.is_file() or PLANTED.encode() not in path.read_bytes(), path


def test_a_sleeping_import_costs_its_own_lab_within_the_backstop(graded):
    assert score(graded, "sleeper", "softmax") == 0 and score(graded, "sleeper", "one_layer_net") == 15
    assert "within" in messages(graded, "sleeper")


def test_a_spinning_call_is_stopped_by_its_cpu_limit(graded):
    assert score(graded, "spinner", "softmax") == 0
    assert "CPU time" in messages(graded, "spinner")


def test_exits_cost_only_their_own_unit_or_lab(graded):
    assert score(graded, "exit_in_call", "softmax") == 0 and "SystemExit" in messages(graded, "exit_in_call")
    assert score(graded, "os_exit_at_import", "softmax") == 0
    assert score(graded, "os_exit_at_import", "one_layer_net") == 15


def test_memory_and_process_floods_are_stopped(graded):
    assert score(graded, "memory_hog", "softmax") == 0 and "memory" in messages(graded, "memory_hog")
    assert score(graded, "fork_flood", "softmax") == 0
    assert score(graded, "memfd_hog", "softmax") == 0  # memfd_create is refused


def test_cpu_spent_in_children_the_kernel_reaped_still_counts(graded):
    assert score(graded, "hidden_cpu", "softmax") == 0
    assert "CPU time" in messages(graded, "hidden_cpu") or "within" in messages(graded, "hidden_cpu")


def test_forged_grader_messages_stop_no_one_but_their_writer(graded):
    assert score(graded, "forged_frames", "softmax") == 0
    assert "FORGED" not in graded["rows"]["forged_frames"]["status"] and graded["rows"]["reference"]["total"] == "100"


def test_an_output_flood_is_dropped_and_grading_goes_on(graded):
    assert score(graded, "print_flood", "softmax") == 15


def test_garbage_on_the_channel_fails_the_check_that_read_it(graded):
    assert score(graded, "channel_garbage", "softmax") == 0 and "garbage" in messages(graded, "channel_garbage")


def test_a_gigabyte_written_to_disk_is_stopped_at_the_scratch_limit(graded):
    assert score(graded, "disk_filler", "softmax") == 0
    said = messages(graded, "disk_filler")
    # At "namespaces" the scratch is a tmpfs of the limit's size; at "uid" the watchdog stops it.
    assert ("disk limit of 256 MiB" if graded["level"] == "no_sys_admin" else "No space left on device") in said, said


def test_no_worker_finds_the_runs_secret_or_its_class_order(graded):
    assert behaves(graded, "secret_seeker", "softmax"), messages(graded, "secret_seeker")
    results = (graded["out"] / "secret_seeker" / "results.json").read_text()
    assert "class order" not in results and "blind" not in results


def _lab_seconds(graded, student: str, lab: str) -> float:
    db = sqlite3.connect(graded["out"] / "gradebook.sqlite")
    try:
        return db.execute("SELECT seconds FROM labs WHERE student = ? AND lab = ?", (student, lab)).fetchone()[0]
    finally:
        db.close()


@pytest.mark.parametrize("student", ["slow_4s", "slow_55s", "sleeper"])
def test_a_sleeping_submission_is_stopped_within_its_labs_time_budget(graded, student):
    costs = json.loads(next((graded["datasets"] / "cache" / "reference").glob("*/costs.json")).read_text())
    budget = 10 * costs["lab02_softmax"]["lab"] + 30  # the grader's defaults: --lab-factor 10, --lab-margin 30
    seconds = _lab_seconds(graded, student, "lab02_softmax")
    said = messages(graded, student)
    print(f"{student}: lab 02 stopped after {seconds:.0f} s (budget {budget:.0f} s): {said[:200]}")
    assert score(graded, student, "softmax") < 15 and seconds <= budget + 15
    assert "time budget" in said or "within" in said, said


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
    except OSError:
        return ""


def _run_processes() -> list[str]:
    """Processes of a grading run: its servers, workers, and a test daemon."""
    return [p for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())
            and ("autograder.worker" in _cmdline(p) or "autograder.harness" in _cmdline(p) or MARK in _cmdline(p))]


@pytest.mark.alone
@pytest.mark.parametrize("level", list(LEVELS))
def test_kill_9_of_the_grader_leaves_no_process(level, shared_tmp, datasets, modes_restored):
    tmp_path = shared_tmp / f"kill-{level}"
    class_dir = tmp_path / "class"
    for i in range(4):
        write_student(class_dir, f"s{i}", ["lab02"], {"softmax": DAEMON.replace(SOFTMAX, "import time\ntime.sleep(300)\n")})
    subprocess.run(["chmod", "-R", "a+rX", str(tmp_path)], check=True)
    out = shared_folder(tmp_path / "out")
    wrapper, sandbox = LEVELS[level]  # grade_as waits; this grader is killed mid-way
    env = {**os.environ, "AUTOGRADER_DATA": str(datasets / "cache"), "AUTOGRADER_IDX_PATH": str(datasets / "idx"),
           "AUTOGRADER_OFFLINE": "1", "HOME": "/tmp"}
    grader = subprocess.Popen([*wrapper, sys.executable, "-m", "autograder", "--course", str(ROOT), "grade",
                               str(class_dir), "--out", str(out), "-j", "2", "--sandbox", sandbox, "-q"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(MARK in _cmdline(p) for p in os.listdir("/proc") if p.isdigit()):
            time.sleep(0.2)
        assert any(MARK in _cmdline(p) for p in os.listdir("/proc") if p.isdigit()), "no worker started in time"
    finally:
        # The grader only (not the wrapper that started it); what it started must follow.
        for pid in [p for p in os.listdir("/proc") if p.isdigit() and f"grade {class_dir} " in _cmdline(p)]:
            os.kill(int(pid), signal.SIGKILL)
        grader.kill()
        grader.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _run_processes():
        time.sleep(0.2)
    assert _run_processes() == []


FORK_LOOP = code(f"""
    import os, sys, time
    if os.fork() == 0:  # a marker the test can see, then pids used up as fast as it can
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", "{MARK}"])
    def softmax(x, dim=-1):
        while True:
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
    """)


@pytest.mark.alone
def test_two_graders_on_one_machine_keep_to_their_own_workers(shared_tmp, datasets, modes_restored):
    """At "uid" each grader's workers run as uids of a block it holds: killing one grader (its
    janitor then cleans up by uid) touches nothing of the other's, while a fork loop recycles pids."""
    root = shared_tmp / "two-graders"
    for name, students in (("a", {"looper": {"softmax": FORK_LOOP}, "ref": {}}),
                           ("b", {"ref": {}, "wrong": {"softmax": "def softmax(x, dim=-1):\n    return x\n"}})):
        for student, replaced in students.items():
            write_student(root / name, student, ["lab02"], replaced)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    env = {"AUTOGRADER_DATA": str(datasets / "cache"), "AUTOGRADER_IDX_PATH": str(datasets / "idx"),
           "AUTOGRADER_OFFLINE": "1"}
    lone = shared_folder(root / "lone")
    assert grade_as("no_sys_admin", ["grade", str(root / "b"), "--out", str(lone), "--device", "cpu", "-q"],
                    env).returncode == 0
    wrapper, sandbox = LEVELS["no_sys_admin"]
    started = {name: subprocess.Popen([*wrapper, sys.executable, "-m", "autograder", "--course", str(ROOT), "grade",
                                       str(root / name), "--out", str(shared_folder(root / f"out-{name}")),
                                       "--sandbox", sandbox, "--device", "cpu", "-q", "--min-wall", "120"],
                                      env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      start_new_session=True)
               for name in ("a", "b")}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(MARK in _cmdline(p) for p in os.listdir("/proc") if p.isdigit()):
            time.sleep(0.2)
        time.sleep(2)  # the loop runs
        assert started["b"].poll() is None, "grader b finished before a was killed: the test proves nothing"
        for pid in [p for p in os.listdir("/proc") if p.isdigit() and f"grade {root / 'a'} " in _cmdline(p)]:
            os.kill(int(pid), signal.SIGKILL)
        assert started["b"].wait(600) == 0, started["b"].stderr.read()[-3000:]
    finally:
        for proc in started.values():
            proc.kill()
            proc.wait()
    assert (root / "out-b" / "grades.csv").read_text() == (lone / "grades.csv").read_text()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _run_processes():
        time.sleep(0.2)
    assert _run_processes() == []
