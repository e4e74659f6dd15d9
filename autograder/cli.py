"""The `autograder` command: one subcommand per workflow, each a thin layer over the Python API."""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path

from .course import Course, CourseError, find_course

DESCRIPTION = """\
Autograder for the lecture 3 labs (vanilla neural networks: inference and learning).

Instructor: `autograder data`, then `autograder release` (source/ -> release/) and
`autograder validate`. Run from the course checkout, or name it with --course DIR.
"""


def cmd_data(args: argparse.Namespace, course: Course) -> int:
    helpers = course.helpers()
    if args.cache:
        os.environ["AUTOGRADER_DATA"] = str(Path(args.cache).resolve())
    names = args.datasets or list(helpers.DATASETS)
    if args.import_dir and len(names) != 1:
        raise CourseError("--import DIR holds one dataset: name it, e.g. `autograder data fashion-mnist --import DIR`")
    failed = 0
    for name in names:
        try:
            if args.import_dir:
                folder = helpers.import_idx(name, args.import_dir)
            else:
                folder = helpers.ensure(name, offline=args.offline or None)
            sizes = ", ".join(f"{split} {len(helpers.load(name, split)[1])}" for split in helpers.SPLITS)
            print(f"{name}: ready in {folder} ({sizes})")
        except helpers.DatasetError as e:
            print(f"autograder data: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_release(args: argparse.Namespace, course: Course) -> int:
    from .release import release

    files = release(course)
    print(f"released {len(files)} files into {course.release}")
    return 0


def cmd_validate(args: argparse.Namespace, course: Course) -> int:
    from .validate import validate

    problems = validate(course)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"autograder validate: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("autograder validate: the course is valid")
    return 0


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N, e.g. 1/4") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: K must be between 1 and N")
    return k, n


def _report(results, out: Path) -> None:
    from .feedback import summary, summary_text

    if results:
        print(summary_text(summary(results), results[0].max_total))
    print(f"{len(results)} student(s) in {out / 'grades.csv'}; feedback in {out}/<student>/feedback.html")


def cmd_grade(args: argparse.Namespace, course: Course) -> int:
    from tqdm import tqdm

    from .grade import grade
    from .sandbox import Limits

    limits = Limits(check_seconds=args.check_timeout, lab_seconds=args.lab_timeout,
                    memory_bytes=int(args.memory_gib * 2**30))
    if os.geteuid() != 0:
        print("autograder grade: warning: not run as root, so student code runs as your own user: it cannot "
              "reach the grader's process, but it can read the course and the output folder and use the "
              "network. Grade as root (a container, a CI job, Gradescope) for the full sandbox.", file=sys.stderr)
    bar = tqdm(unit="student", desc="grading", disable=args.quiet)

    def progress(done: int, total: int, finished: list[str]) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix(running=min(args.jobs, total - done))
        bar.refresh()

    try:
        results = grade(course, args.submissions, args.out, jobs=args.jobs, device=args.device, limits=limits,
                        regrade=args.regrade, shard=args.shard, progress=progress)
    finally:
        bar.close()
    _report(results, args.out)
    return 0


def cmd_merge(args: argparse.Namespace, course: Course) -> int:
    from .grade import merge

    _report(merge(course, args.parts, args.out), args.out)
    return 0


def cmd_bundle(args: argparse.Namespace, course: Course) -> int:
    from .bundle import bundle

    print(f"wrote {bundle(course, args.out)}: upload it as the assignment's autograder on Gradescope")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="autograder", description=DESCRIPTION,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--course", type=Path, help="folder holding source/ and release/ (default: $AUTOGRADER_COURSE, else the "
                     "current folder or a parent holding source/, else this package's checkout)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="make MNIST and Fashion-MNIST available offline",
                       description="Make the datasets available offline, converted once into the cache "
                       "($AUTOGRADER_DATA, default ~/.cache/autograder). Looks in the cache, then in "
                       "<dir>/<dataset>/ for each dir of $AUTOGRADER_IDX_PATH (default /usr/share/datasets, "
                       "where Debian's dataset-fashion-mnist installs), then downloads with torchvision.")
    p.add_argument("datasets", nargs="*", metavar="DATASET",
                   help="mnist and/or fashion-mnist (default: both)")
    p.add_argument("--import", dest="import_dir", type=Path, metavar="DIR",
                   help="convert the four original IDX files (.gz or not) found in DIR")
    p.add_argument("--cache", type=Path, metavar="DIR", help="cache folder (default $AUTOGRADER_DATA)")
    p.add_argument("--offline", action="store_true", help="never download")
    p.set_defaults(run=cmd_data)

    p = sub.add_parser("release", help="regenerate release/ from source/",
                       description="Regenerate release/ from source/ with nbgrader's preprocessors: solutions "
                       "become stubs, hidden tests and outputs are removed, read-only cells locked, checksums "
                       "set. Byte-for-byte reproducible; release/ is replaced only if every notebook released.")
    p.set_defaults(run=cmd_release)

    p = sub.add_parser("validate", help="check that the course is consistent",
                       description="Exit non-zero, naming notebook and cell, unless release/ is in sync with "
                       "source/, every source exercise passes all its tests with its solutions, and every "
                       "released exercise fails its tests with NotImplementedError and nothing worse.")
    p.set_defaults(run=cmd_validate)

    p = sub.add_parser("grade", help="grade a class of submissions",
                       description="Grade submissions into DIR: grades.csv (one row per student), "
                       "DIR/<student>/results.json (Gradescope's format) and feedback.html, summary.html, and the "
                       "SQLite gradebook that makes a rerun grade only what is new or changed (after a crash "
                       "too). A SUBMISSION is one student's folder "
                       "of exercise notebooks (its name is the student id), a folder of such folders, or "
                       "nbgrader's submitted/<student>/<assignment>/ tree. Notebooks are matched to labs by "
                       "their grade_ids. Student code runs only in sandboxed worker processes.")
    p.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the results go")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="students graded in parallel (default 1)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where trainers and accuracy checks run (auto: cuda when available)")
    p.add_argument("--check-timeout", type=float, default=300, metavar="S", help="seconds per check (default 300)")
    p.add_argument("--lab-timeout", type=float, default=900, metavar="S", help="seconds per lab (default 900)")
    p.add_argument("--memory-gib", type=float, default=4, metavar="G", help="memory per worker (default 4)")
    p.add_argument("--regrade", action="store_true",
                   help="grade again students the gradebook already holds unchanged (default: only new or changed)")
    p.add_argument("--shard", type=_shard, metavar="K/N",
                   help="grade only the K-th of N stable parts of the students (for job arrays; see merge)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_grade)

    p = sub.add_parser("merge", help="combine the output folders of grade --shard runs",
                       description="Combine the gradebooks of several `grade --shard K/N` output folders into "
                       "DIR and write grades.csv, results.json, feedback and summary from it, as one run would.")
    p.add_argument("parts", nargs="+", type=Path, metavar="PART", help="output folders of the shards")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.set_defaults(run=cmd_merge)

    p = sub.add_parser("bundle", help="make a Gradescope autograder zip",
                       description="Write a Gradescope autograder (setup.sh, run_autograder and this package with "
                       "the course) that grades /autograder/submission with the same checks into "
                       "/autograder/results/results.json. Upload it under the assignment's Configure Autograder.")
    p.add_argument("--out", type=Path, default=Path("autograder.zip"), metavar="FILE.zip")
    p.set_defaults(run=cmd_bundle)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        course = Course(args.course.resolve()) if args.course else find_course()
        return args.run(args, course)
    except Exception as e:
        helpers = sys.modules.get("utils")  # the course's utils.py, whose DatasetError is one line too
        if isinstance(e, (CourseError, OSError, sqlite3.Error)) or \
                (helpers and isinstance(e, getattr(helpers, "DatasetError", ()))):
            print(f"autograder {args.command}: {e}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print(f"autograder {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
