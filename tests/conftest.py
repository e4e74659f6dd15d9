"""Shared fixtures: the course checkout, datasets that never touch the network, submissions made
from the course's own notebooks, and running the grader at each sandbox level.

MNIST cannot be downloaded on the test machines, so tests write small MNIST-format IDX files;
Fashion-MNIST comes from Debian's dataset-fashion-mnist, as on a course server.
"""
from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from autograder.course import Course

ROOT = Path(__file__).resolve().parent.parent
FASHION_IDX = Path("/usr/share/datasets/fashion-mnist")
NOBODY = 65534
# How each sandbox level is reached from a root test run: as root (namespaces), as an
# unprivileged user (namespaces in a user namespace), and as root without CAP_SYS_ADMIN, as in a
# Docker or Gradescope container (uid).
LEVELS = {
    "root": ([], "auto"),
    "unprivileged": (["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"], "auto"),
    "no_sys_admin": (["capsh", "--drop=cap_sys_admin", "--", "-c", 'exec "$0" "$@"'], "uid"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x08 then the number of dimensions, then the sizes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def learnable_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 images whose class k is a bright band at rows 2k..2k+7 over faint noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 * k: 2 * k + 8, 4:24] = 255
    return images, labels


def write_mnist_idx(folder: Path, n_train: int = 600, n_test: int = 200, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = learnable_digits(n, seed)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(array)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (folder / name).write_bytes(data)
    return folder


# ---- work that runs while the tests do -----------------------------------------------------------
# Most of the suite's time is grading classes: many of them are waiting (on sleepers, hangs, apt)
# as much as computing. A module that grades a class says so with start_early(config), which
# submits its grading here as soon as the tests are collected; its tests run after those that grade
# nothing, and wait for its result (a module's EARLY, default 10, orders the submissions: the
# longest waits first). Tests marked `alone` (they look at every process of the machine) run last,
# once nothing else runs.
BACKGROUND = ThreadPoolExecutor(max_workers=3, thread_name_prefix="grading")
STARTED: list[Future] = []


def in_background(work, *args) -> Future:
    """`work(*args)` on the background pool; its result (or its error) when a test asks for it."""
    future = BACKGROUND.submit(work, *args)
    STARTED.append(future)
    return future


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what will not run
def pytest_collection_modifyitems(config, items) -> None:
    modules = list(dict.fromkeys(item.module for item in items if getattr(item, "module", None) is not None))
    early = sorted((m for m in modules if hasattr(m, "start_early")), key=lambda m: getattr(m, "EARLY", 10))
    for module in early:
        module.start_early(config)
    rank = {m: i + 1 for i, m in enumerate(early)}
    items.sort(key=lambda item: (item.get_closest_marker("alone") is not None,
                                 rank.get(getattr(item, "module", None), 0)))


@pytest.fixture(autouse=True)
def _alone(request) -> None:
    """A test marked `alone` runs once every background grading is done."""
    if request.node.get_closest_marker("alone"):
        for future in list(STARTED):
            future.exception()  # waits; the error, if any, is the test's that asks for it


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "alone: looks at every process of the machine: runs when nothing else runs")


def pytest_sessionfinish(session) -> None:
    BACKGROUND.shutdown(wait=True, cancel_futures=True)
    restore_modes()
    if _SHARED:
        shutil.rmtree(_SHARED[0], ignore_errors=True)


@pytest.fixture(scope="session")
def course() -> Course:
    return Course(ROOT)


def copy_course(folder: Path) -> Course:
    """A copy of the course (source, release, checks, course.toml) in `folder`."""
    for part in ("source", "release"):
        shutil.copytree(ROOT / part, folder / part, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "autograder" / "checks", folder / "autograder" / "checks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "course.toml", folder / "course.toml")
    return Course(folder)


@pytest.fixture
def course_copy(tmp_path: Path) -> Course:
    """A scratch copy of the course to break on purpose."""
    return copy_course(tmp_path)


_ONCE = threading.Lock()
_SHARED: list[Path] = []
_DATASETS: list[Path] = []
_MODES: dict[Path, int] = {}


def shared_root() -> Path:
    """A temporary folder every user can traverse (pytest's own is root's alone): the level tests
    grade as an unprivileged user, who must reach the data, the submissions and the output."""
    with _ONCE:
        if not _SHARED:
            root = Path(tempfile.mkdtemp(prefix="autograder-tests-"))
            root.chmod(0o755)
            _SHARED.append(root)
        return _SHARED[0]


@pytest.fixture(scope="session")
def shared_tmp() -> Path:
    return shared_root()


def prepared_datasets() -> Path:
    """An IDX search path with test-written MNIST and Debian's Fashion-MNIST, and its cache (with
    the course artifacts); all readable by the unprivileged user the level tests grade as. Made once
    a session, by whichever test or background grading asks first; the session's environment then
    finds them (AUTOGRADER_DATA, AUTOGRADER_IDX_PATH, AUTOGRADER_OFFLINE)."""
    root = shared_root() / "datasets"
    with _ONCE:
        if _DATASETS:
            return _DATASETS[0]
        if not (FASHION_IDX / "train-images-idx3-ubyte.gz").is_file():
            pytest.fail(f"{FASHION_IDX} is missing: apt-get install dataset-fashion-mnist")
        write_mnist_idx(root / "idx" / "mnist", gz=True)
        (root / "idx" / "fashion-mnist").symlink_to(FASHION_IDX)
        env = {**os.environ, "AUTOGRADER_DATA": str(root / "cache"), "AUTOGRADER_IDX_PATH": str(root / "idx"),
               "AUTOGRADER_OFFLINE": "1"}
        # The data, then the course artifacts (each check's reference cost, the reference pictures),
        # as an instructor's `autograder data` and `autograder release` would leave them.
        for command in (["data", "fashion-mnist"], ["release", "--artifacts-only", "-q", "--device", "cpu"]):
            done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(ROOT), *command], env=env,
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
        for path in (root, *root.rglob("*")):
            path.chmod(path.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0))
        os.environ.update({k: env[k] for k in ("AUTOGRADER_DATA", "AUTOGRADER_IDX_PATH", "AUTOGRADER_OFFLINE")})
        _DATASETS.append(root)
        return root


@pytest.fixture(scope="session")
def datasets() -> Path:
    return prepared_datasets()


@pytest.fixture(scope="session")
def data_env_session(datasets: Path) -> Path:
    """The session's environment, which finds the datasets (set when they were made)."""
    return datasets


@pytest.fixture
def data_env(datasets: Path, monkeypatch) -> Path:
    """Environment (inherited by notebook kernels and grading processes) that finds both datasets
    offline."""
    monkeypatch.setenv("AUTOGRADER_DATA", str(datasets / "cache"))
    monkeypatch.setenv("AUTOGRADER_IDX_PATH", str(datasets / "idx"))
    monkeypatch.setenv("AUTOGRADER_OFFLINE", "1")
    return datasets


def open_modes() -> None:
    """Grading as another user needs what that user runs to be reachable: the interpreter and this
    checkout may lie under folders only their owner may enter (/root, a 0700 home folder, mktemp
    -d), so every folder above them is made traversable (not readable) for the session; the uid
    level changes modes too. Every mode is put back after the session (restore_modes)."""
    with _ONCE:
        if _MODES:
            return
        ancestors = {parent for path in (ROOT, Path(sys.prefix), Path(os.path.realpath(sys.executable)), FASHION_IDX)
                     for parent in path.resolve().parents}
        watched = [*ancestors, ROOT, *ROOT.iterdir(), *(ROOT / "autograder").iterdir(), FASHION_IDX]
        _MODES.update({p: stat.S_IMODE(p.lstat().st_mode) for p in watched if p.exists() and not p.is_symlink()})
        for folder in ancestors:
            folder.chmod(_MODES[folder] | stat.S_IXOTH)


def restore_modes() -> None:
    for path, mode in _MODES.items():
        if stat.S_IMODE(path.lstat().st_mode) != mode:
            path.chmod(mode)


@pytest.fixture(scope="session")
def modes_restored() -> None:
    open_modes()


def data_environment() -> dict[str, str]:
    """The environment that finds the session's datasets offline, for a process of its own (a
    background grading must not read os.environ, which a test may be changing meanwhile)."""
    root = prepared_datasets()
    return {"AUTOGRADER_DATA": str(root / "cache"), "AUTOGRADER_IDX_PATH": str(root / "idx"),
            "AUTOGRADER_OFFLINE": "1"}


def grade_class(folder: Path, out: Path, *options: str, level: str = "root", course: Path = ROOT,
                env: dict | None = None, timeout: float = 1800, wrapper: list[str] = (),
                quiet: bool = True) -> subprocess.CompletedProcess:
    """`autograder grade FOLDER --out OUT` through the command line, as a TA runs it, at one of
    LEVELS, with the session's data (and `env`), run by `wrapper` (taskset, say), with `-q` unless
    the test reads the progress and the sandbox line; a failed run is the test's failure, with its
    output."""
    command, env = grade_command(level, ["grade", str(folder), "--out", str(out), "--device", "cpu",
                                         *(["-q"] if quiet else []), *options],
                                 {**data_environment(), **(env or {})}, course)
    done = subprocess.run([*wrapper, *command], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command[-12:])} failed:\n{done.stderr[-4000:]}"
    return done


def finals_of(out: Path, course: Path = ROOT) -> dict:
    """student -> final grade (autograder.final.Final), as the output folder's last report made them."""
    from autograder.gradebook import Gradebook
    from autograder.reports import finals

    book = Gradebook(out / "gradebook.sqlite")
    try:
        return {f.student: f for f in finals(Course(course), book, out)}
    finally:
        book.close()


def grade_command(level: str, args: list[str], env: dict | None = None, course: Path = ROOT) -> tuple[list[str], dict]:
    """(command, environment) of `autograder ARGS` at one of LEVELS (output folders must be
    writable by that user)."""
    wrapper, sandbox = LEVELS[level]
    command = [*wrapper, sys.executable, "-m", "autograder", "--course", str(course), *args]
    if args and args[0] in ("grade", "check") and "--sandbox" not in args and "--no-sandbox" not in args:
        command += ["--sandbox", sandbox]
    env = {**os.environ, **(env or {})}
    if level == "unprivileged":
        env["HOME"] = "/tmp"
    return command, env


def grade_as(level: str, args: list[str], env: dict | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """`autograder ARGS` at one of LEVELS, to its end."""
    command, env = grade_command(level, args, env)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def shared_folder(path: Path) -> Path:
    """A folder every level's grader may write to."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def without_student_code(text: str) -> str:
    """An output file's text less the students' own code that summary.html shows a TA (the
    review queue's units): what a student wrote is not a leak of the grader's."""
    return re.sub(r"<pre>.*?</pre>", "", text, flags=re.S)


def code(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def unit_cell(nb, unit: str):
    from autograder.course import nbgrader_meta

    return next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == unit)


def write_student(root: Path, student: str, labs: list[str] | None = None, code: dict[str, str] | None = None,
                  tree: str = "source", edit=None) -> Path:
    """A student's folder made from the course's own exercise notebooks (`tree`: source, with the
    reference solutions, or release, untouched), keeping only `labs` (folder names or prefixes like
    'lab02'), with the cells of the units in `code` replaced, then `edit(lab_name, nb)` applied."""
    import nbformat

    folder = root / student
    folder.mkdir(parents=True)
    course = Course(ROOT)
    for lab in course.labs:
        if labs is not None and not any(lab.name.startswith(prefix) for prefix in labs):
            continue
        nb = nbformat.read(getattr(course, tree) / lab.name / lab.exercise.name, 4)
        for unit, source in (code or {}).items():
            if unit in lab.units:
                unit_cell(nb, unit).source = source
        if edit:
            edit(lab.name, nb)
        nbformat.write(nb, folder / lab.exercise.name)
    return folder


def reference_code(unit: str) -> str:
    import nbformat

    course = Course(ROOT)
    return unit_cell(nbformat.read(course.lab_of(unit).exercise, 4), unit).source
