"""The `autograder` command: one subcommand per workflow, each a thin layer over the Python API.

Nothing heavy is imported before the arguments are read, and torch only by the commands that
grade: `--help`, a wrong argument, `review`, `report`, `override` and `export` answer at once.
"""
from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from .course import Course, CourseError, find_course

VISIBILITIES = ["after_published", "after_due_date", "hidden", "visible"]
DESCRIPTION = """\
Autograder for the lecture 3 labs (vanilla neural networks: inference and learning).

Instructor: `autograder data`, then `autograder release` (source/ -> release/, and the reference
artifacts grading needs) and `autograder validate`. TA: `autograder grade`, then `review`,
`override`, `report` and `export`. Student: `autograder check`. Run from the course checkout, or
name it with --course DIR. See docs/ in the course repository for the contract and the sandbox.
"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("autograder")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
        return value
    return parse


def cmd_data(args: argparse.Namespace, course: Course) -> int:
    helpers = course.helpers()
    if args.cache:
        os.environ["AUTOGRADER_DATA"] = str(Path(args.cache).resolve())
    names = args.datasets or list(helpers.DATASETS)
    if args.import_dir and len(names) != 1:
        raise CourseError(f"--import DIR holds one dataset: name it, e.g. `autograder data {course.dataset} --import DIR`")
    failed = 0
    for name in names:
        try:
            if args.import_dir:
                folder = helpers.import_idx(name, args.import_dir)
            else:
                folder = helpers.ensure(name, offline=args.offline or None)
            sizes = ", ".join(f"{split} {len(helpers.load_arrays(name, split)[1])}" for split in helpers.SPLITS)
            print(f"{name}: ready in {folder} ({sizes})")
        except helpers.DatasetError as e:
            print(f"autograder data: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _level(args: argparse.Namespace, course: Course, paths: list[Path], out: Path):
    """The sandbox level, chosen once and printed; a one-line error when none is possible."""
    from .grade import protected_paths
    from .sandbox import choose_level

    requested = "none" if getattr(args, "no_sandbox", False) else args.sandbox
    level = choose_level(requested, protected_paths(course, paths, out), cuda=_device(args.device) == "cuda")
    if not args.quiet:
        print(f"sandbox: {level.describe()}", file=sys.stderr)
    return level


def _device(requested: str) -> str:
    """cpu or cuda; `auto` asks torch only where there is an NVIDIA device to ask about."""
    if requested != "auto":
        return requested
    if not any(name.startswith("nvidia") for name in os.listdir("/dev")):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _build_artifacts(course: Course, args: argparse.Namespace) -> None:
    from .grade import Run, build_artifacts

    started = time.monotonic()
    built = build_artifacts(course, Run(_level(args, course, [], course.root), device=_device(args.device)))
    costs = sum(len(lab) for lab in built.costs.values())
    print(f"built the reference artifacts ({costs} costs, {len(built.kept)} pictures) "
          f"in {time.monotonic() - started:.0f} s")


def cmd_release(args: argparse.Namespace, course: Course) -> int:
    if not args.artifacts_only:
        from .release import release

        files = release(course)
        print(f"released {len(files)} files into {course.release}")
    if not args.no_artifacts:
        _build_artifacts(course, args)
    return 0


def cmd_validate(args: argparse.Namespace, course: Course) -> int:
    from .validate import validate

    for lab in args.lab or ():
        course.lab(lab)
    problems = validate(course, _level(args, course, [], course.root), progress=None if args.quiet else print,
                        labs=tuple(args.lab) if args.lab else None)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"autograder validate: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("autograder validate: the course is valid" + (f" ({', '.join(args.lab)})" if args.lab else ""))
    return 0


def _progress(args: argparse.Namespace):
    """A progress bar on a terminal, a line every half minute otherwise (a log stays small)."""
    if args.quiet:
        return None, lambda: None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="lab", desc="grading", file=sys.stderr)

        def show(done: int, total: int) -> None:
            bar.total, bar.n = total, done
            bar.refresh()
        return show, bar.close
    last = [0.0, -1]

    def line(done: int, total: int) -> None:
        if time.monotonic() - last[0] >= 30 or (done == total and last[1] != done):
            last[:] = [time.monotonic(), done]
            print(f"grading: {done}/{total} labs done", file=sys.stderr, flush=True)
    return line, lambda: None


def _run(args: argparse.Namespace, course: Course, paths: list[Path], out: Path, public_only: bool = False):
    from . import artifacts
    from .grade import Run
    from .sandbox import Limits

    for lab in args.lab or ():
        course.lab(lab)  # an unknown lab is a one-line error, before anything starts
    limits = Limits(memory_bytes=int(args.memory_gib * 2**30), min_wall_seconds=args.min_wall,
                    cpu_factor=args.cpu_factor, min_cpu_seconds=args.min_cpu, lab_factor=args.lab_factor,
                    lab_margin_seconds=args.lab_margin)
    if artifacts.load(course) is None:
        fix = "run `autograder release --artifacts-only` once"
        if getattr(args, "require_artifacts", False):
            raise CourseError(f"no reference artifacts for this version of the course (each check's time limit "
                              f"comes from them): {fix}")
        if not args.quiet and not public_only:  # a student's self-check does well with the defaults
            print(f"autograder: warning: no reference artifacts for this version of the course, so every check may "
                  f"use {limits.default_cpu_seconds:.0f} s of CPU, a lab {limits.default_lab_seconds:.0f} s, and "
                  f"feedback shows no reference pictures; {fix}", file=sys.stderr)
    return Run(_level(args, course, paths, out), limits, _device(args.device), args.jobs,
               tuple(args.lab) if args.lab else None, public_only, args.hidden_visibility,
               getattr(args, "leaderboard", False))


def _report(report, out: Path) -> None:
    from .feedback import summary, summary_text

    if report.finals:
        print(summary_text(summary(report.finals), report.finals[0].max_total))
    for student, old, new in report.changed:
        print(f"total changed: {student}: {old:g} -> {new:g}")
    if report.queue:
        print(f"{len(report.queue)} to review: autograder review {out}")
    print(f"{len(report.finals)} student(s) in {out / 'grades.csv'}; feedback in {out}/<student>/feedback.html")


def cmd_grade(args: argparse.Namespace, course: Course) -> int:
    from .grade import grade

    run = _run(args, course, args.submissions, args.out)
    show, close = _progress(args)
    try:
        report = grade(course, args.submissions, args.out, run, regrade=args.regrade, shard=args.shard,
                       students=tuple(args.student or ()), as_student=args.as_student,
                       gradescope=args.gradescope_metadata, extensions=args.extensions, progress=show)
    finally:
        close()
    _report(report, args.out)
    return 0


def _notebook_problem(course: Course, path: Path) -> str | None:
    """What keeps `path` from being graded as an exercise of this course, in a student's words."""
    from .course import read_notebook
    from .extract import units_in

    if not path.is_file():
        return f"{path}: no such file"
    try:
        nb = read_notebook(path)
    except CourseError as e:
        return f"{path}: not a notebook that can be read ({str(e).removeprefix(f'{path}: ')})"
    if not any(units_in(nb, lab.units)[0] for lab in course.labs):
        demo = path.name.endswith("_demo.ipynb")
        return (f"{path}: holds no exercise of this course (no cell defining "
                f"{', '.join(course.units)})" + ("; this is a demo notebook: check the *_exercise.ipynb beside it"
                                                  if demo else ""))
    return None


def cmd_check(args: argparse.Namespace, course: Course) -> int:
    from .grade import grade

    problems = [p for p in (_notebook_problem(course, path) for path in args.notebooks) if p]
    for problem in problems:
        print(problem, file=sys.stderr)
    usable = [p for p in args.notebooks if _notebook_problem(course, p) is None]
    if not usable:
        raise CourseError("nothing to check" if len(problems) > 1 else problems[0].split(": ", 1)[1] + "; nothing "
                          "to check")
    with tempfile.TemporaryDirectory(prefix="autograder-check-") as tmp:
        folder = Path(tmp) / "you"
        folder.mkdir()
        for i, path in enumerate(usable):
            (folder / f"{i}-{path.name}").write_bytes(path.read_bytes())
        run = _run(args, course, [folder], Path(tmp) / "out", public_only=True)
        report = grade(course, [folder], Path(tmp) / "out", run, regrade=True, pages=False)
    for result in report.finals:
        _print_check(course, result)
    return 1 if problems else 0


def _print_check(course: Course, result) -> None:
    from .reports import submitted_labs

    for lab in (lab for lab in result.labs if lab in submitted_labs(result)):
        lab_obj = course.lab(lab)
        checks = [c for c in result.checks if c["lab"] == lab]
        got = sum(c["points"] for c in checks if c["passed"])
        print(f"{lab}")
        for c in checks:
            verdict = "PASS" if c["passed"] else "FAIL"
            print(f"  {verdict}  {c['unit']}: {c['label']}  ({c['points'] if c['passed'] else 0:g}/{c['points']:g})")
            if not c["passed"]:
                print(f"        {c['message']}")
        public = sum(c["points"] for c in checks)
        total = sum(lab_obj.test_cells().values())
        print(f"  score so far: {got:g} of {public:g} public points; hidden checks worth {total - public:g} more "
              f"run when your work is graded")
    for problem in result.problems:
        if not problem.startswith("no notebook for"):
            print(f"could not run: {problem}")


def cmd_merge(args: argparse.Namespace, course: Course) -> int:
    from .grade import merge

    _report(merge(course, args.parts, args.out, args.extensions), args.out)
    return 0


def cmd_report(args: argparse.Namespace, course: Course) -> int:
    from .grade import report

    _report(report(course, args.out, args.extensions), args.out)
    return 0


def cmd_review(args: argparse.Namespace, course: Course) -> int:
    from .grade import open_output
    from .reports import finals
    from .review import queue, render

    with open_output(args.out) as book:
        print(render(queue(course, book, finals(course, book, args.out.resolve()))).replace("DIR", str(args.out)))
    return 0


def cmd_override(args: argparse.Namespace, course: Course) -> int:
    import datetime

    from .final import Override, add_override, check_overrides
    from .grade import open_output, report
    from .reports import finals

    out = args.out.resolve()
    override = Override(args.student, args.unit, args.points, args.reason, args.by,
                        datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    with open_output(out) as book:
        found = finals(course, book, out)
        ungraded = book.ungraded()
    check_overrides([override], {f.student: ({} if f.student in ungraded else f.max_units) for f in found},
                    out / "overrides.csv")
    add_override(out, override)
    print(f"{args.student}: {args.unit} set to {args.points:g} ({args.reason})")
    _report(report(course, out), out)
    return 0


def cmd_export(args: argparse.Namespace, course: Course) -> int:
    from .export import canvas

    done = canvas(args.out, args.canvas, args.assignment, args.match)
    args.file.parent.mkdir(parents=True, exist_ok=True)
    args.file.write_text(done.text, encoding="utf-8")
    print(f"wrote {args.file}: {done.matched} student(s) with their total for {args.assignment!r}; import it in "
          "Canvas's Grades > Import")
    if done.not_in_roster:
        print(f"autograder export: graded but not in {args.canvas} (not exported): "
              f"{', '.join(map(repr, done.not_in_roster))}", file=sys.stderr)
    if done.not_graded:
        print(f"autograder export: in {args.canvas} but not graded (left blank): {'; '.join(done.not_graded)}",
              file=sys.stderr)
    return 1 if done.not_in_roster or done.not_graded else 0


def cmd_bundle(args: argparse.Namespace, course: Course) -> int:
    from .bundle import bundle

    print(f"wrote {bundle(course, args.out, args.lab, args.hidden_visibility, args.leaderboard)}: upload it as "
          "the assignment's autograder on Gradescope")
    return 0


def cmd_kit(args: argparse.Namespace, course: Course) -> int:
    from .kit import kit

    print(f"wrote {kit(course, args.out)}: students `pip install` it, then run `autograder check NOTEBOOK`")
    return 0


def _sandbox_options(p: argparse.ArgumentParser, grading: bool = True) -> None:
    p.add_argument("--sandbox", choices=["auto", "namespaces", "uid"], default=os.environ.get("AUTOGRADER_SANDBOX", "auto"),
                   help="how student code is isolated: namespaces (root, or any user with unprivileged user "
                        "namespaces), uid (root without CAP_SYS_ADMIN: Docker, Gradescope), or auto, the strongest "
                        "that works (default; $AUTOGRADER_SANDBOX)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="grade even where no isolation is possible; every row's status then says 'no sandbox'")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where trainers and accuracy checks run (auto: cuda when available)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no sandbox line")
    if grading:
        p.add_argument("--lab", action="append", metavar="NAME",
                       help="grade only this lab (repeatable; default: every lab some submission holds)")
        p.add_argument("-j", "--jobs", type=_positive(int), default=1, metavar="N",
                       help="students graded in parallel (default 1)")
        p.add_argument("--memory-gib", type=_positive(float), default=4, metavar="G",
                       help="memory per worker (default 4)")
        p.add_argument("--cpu-factor", type=_positive(float), default=20, metavar="F",
                       help="CPU seconds a check may use, as a multiple of what the reference solution needed "
                            "(default 20; at least --min-cpu)")
        p.add_argument("--min-cpu", type=_positive(float), default=10, metavar="S",
                       help="CPU seconds a check may use, at least (default 10)")
        p.add_argument("--min-wall", type=_positive(float), default=60, metavar="S",
                       help="wall-clock backstop per check, not counting waits for a busy CPU, at least (default 60 s; "
                            "3 times the CPU limit when more)")
        p.add_argument("--lab-factor", type=_positive(float), default=10, metavar="F",
                       help="seconds a lab's calls may take, not counting waits for a busy CPU, as a multiple of the "
                            "reference's own time for them, plus --lab-margin (default 10)")
        p.add_argument("--lab-margin", type=_positive(float), default=30, metavar="S",
                       help="seconds added to each lab's time budget (default 30)")
        p.add_argument("--hidden-visibility", choices=VISIBILITIES, default="after_published",
                       help="Gradescope's visibility of the hidden checks in results.json (default after_published: "
                            "students see them, and a total that counts them, once grades are published)")


def _out(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("out", type=Path, metavar="DIR", help=f"an output folder of `autograder grade` {what}")


def _extensions(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extensions", type=Path, metavar="FILE",
                   help="CSV student,lab,days: extra days before a lab counts as late (kept in DIR for every later "
                        "report)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="autograder", description=DESCRIPTION,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"autograder {_version()}")
    top.add_argument("--course", type=Path, help="folder holding source/ and course.toml (default: $AUTOGRADER_COURSE, "
                     "else the current folder or a parent holding source/, else this package's checkout)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="make the course's datasets available offline",
                       description="Make the course's datasets available offline, converted once into the cache "
                       "($AUTOGRADER_DATA, default ~/.cache/autograder). Looks in the cache, then in "
                       "<dir>/<dataset>/ for each dir of $AUTOGRADER_IDX_PATH (default /usr/share/datasets, "
                       "where Debian's dataset packages install), then downloads with torchvision.")
    p.add_argument("datasets", nargs="*", metavar="DATASET", help="the datasets the course helpers know "
                   "(default: all of them)")
    p.add_argument("--import", dest="import_dir", type=Path, metavar="DIR",
                   help="convert the four original IDX files (.gz or not) found in DIR")
    p.add_argument("--cache", type=Path, metavar="DIR", help="cache folder (default $AUTOGRADER_DATA)")
    p.add_argument("--offline", action="store_true", help="never download")
    p.set_defaults(run=cmd_data)

    p = sub.add_parser("release", help="regenerate release/ from source/ and build the reference artifacts",
                       description="Regenerate release/ from source/ with nbgrader's preprocessors: solutions "
                       "become stubs, hidden tests and outputs are removed, read-only cells locked, checksums "
                       "set; each lab folder gets its own copy of utils.py. Byte-for-byte reproducible; release/ "
                       "is replaced only if every notebook released. Then grades the reference solutions once "
                       "and keeps, per course version, what grading needs: each check's CPU cost and each lab's "
                       "time (their time limits) and the reference's pictures.")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--no-artifacts", action="store_true", help="only release/, not the reference artifacts")
    what.add_argument("--artifacts-only", action="store_true",
                      help="only the reference artifacts (e.g. in the Gradescope image), not release/")
    _sandbox_options(p, grading=False)
    p.set_defaults(run=cmd_release)

    p = sub.add_parser("validate", help="check that the course is consistent",
                       description="Exit non-zero, naming notebook and cell, unless release/ is in sync with "
                       "source/, every source exercise passes all its tests with its solutions, every released "
                       "exercise fails its tests with NotImplementedError and nothing worse, the source solutions "
                       "grade to full marks and the untouched release to zero, and each test cell is worth what "
                       "the checks standing for it are.")
    p.add_argument("--lab", action="append", metavar="NAME", help="validate only this lab (repeatable)")
    _sandbox_options(p, grading=False)
    p.set_defaults(run=cmd_validate)

    p = sub.add_parser("grade", help="grade a class of submissions",
                       description="Grade submissions into DIR: grades.csv (one row per student), "
                       "DIR/<student>/results.json (Gradescope's format) and feedback.html, summary.html with the "
                       "review queue, and the SQLite gradebook that makes a rerun grade only what is new or "
                       "changed (after a crash too). A SUBMISSION is one student's folder of exercise notebooks "
                       "(flat, or in the release layout; its name is the student id), a folder of such folders, or "
                       "nbgrader's submitted/<student>/<assignment>/ tree. Notebooks are matched to labs by their "
                       "grade_ids. Student code runs only in sandboxed workers. Reports cover every student DIR "
                       "holds; the final grade applies DIR/overrides.csv and course.toml's late policy.")
    p.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the results go")
    p.add_argument("--student", action="append", metavar="ID",
                   help="grade (with --regrade: regrade) only this student (repeatable); every other row stays")
    p.add_argument("--as", dest="as_student", metavar="ID",
                   help="the one SUBMISSION folder is this student's, whatever its layout (as on Gradescope)")
    p.add_argument("--regrade", action="store_true",
                   help="grade again what the gradebook already holds unchanged (default: only new or changed)")
    p.add_argument("--shard", type=_shard, metavar="K/N",
                   help="grade only the K-th of N stable parts of the students (for job arrays; see merge)")
    _extensions(p)
    p.add_argument("--gradescope-metadata", type=Path, metavar="FILE",
                   help="Gradescope's submission_metadata.json: when the one submission was made and is due")
    p.add_argument("--leaderboard", action="store_true",
                   help="results.json carries Gradescope's leaderboard (the training labs' test accuracy)")
    p.add_argument("--require-artifacts", action="store_true",
                   help="refuse to grade without the reference artifacts (a broken setup, not a student's fault)")
    _sandbox_options(p)
    p.set_defaults(run=cmd_grade)

    p = sub.add_parser("check", help="check your own exercise notebooks (public checks only)",
                       description="A student's self-check: your notebooks go through the same sandbox and the "
                       "public checks of the grader; prints each check's verdict and your score so far. Hidden "
                       "checks run only when your work is graded.")
    p.add_argument("notebooks", nargs="+", type=Path, metavar="NOTEBOOK")
    _sandbox_options(p)
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("review", help="list what a person should look at in a graded class",
                       description="The review queue of DIR, one line each: review: flags, labs that were stopped "
                       "or could not run, units that lost points only on rule checks, similar units, late work; "
                       "then how to act on each kind. summary.html shows the same queue with the units' source.")
    _out(p, "")
    p.set_defaults(run=cmd_review)

    p = sub.add_parser("override", help="set a unit's points (or the total) by hand, with a reason",
                       description="Append to DIR/overrides.csv (student,unit,points,reason,by,at) and make every "
                       "report again. The points replace the unit's autograded points (before the late penalty); "
                       "UNIT may be `total`. Regrades keep overrides. To undo one, delete its line and run "
                       "`autograder report DIR`.")
    _out(p, "")
    p.add_argument("student", metavar="STUDENT")
    p.add_argument("unit", metavar="UNIT")
    p.add_argument("points", type=float, metavar="POINTS")
    p.add_argument("--reason", required=True, help="why (shown to the student in results.json and feedback.html)")
    p.add_argument("--by", default=os.environ.get("USER") or getpass.getuser(),
                   help="who decided (default: your user name)")
    p.set_defaults(run=cmd_override)

    p = sub.add_parser("report", help="make every output file again from the gradebook, without grading",
                       description="grades.csv, results.json, feedback.html and summary.html from DIR's gradebook, "
                       "course.toml's late policy, the extensions and DIR/overrides.csv: after a change of due "
                       "date, extension or override, no regrade is needed.")
    _out(p, "")
    _extensions(p)
    p.set_defaults(run=cmd_report)

    p = sub.add_parser("export", help="the final totals as a gradebook CSV Canvas imports",
                       description="Write FILE for Canvas's Grades > Import: the columns Student,ID,SIS User ID,"
                       "SIS Login ID,Section and NAME, with each student's final total from DIR/grades.csv (run "
                       "`autograder report DIR` first after changing overrides or extensions by hand). ROSTER is the "
                       "gradebook CSV Canvas exports (Grades > Export); a student id of DIR is matched to its SIS "
                       "Login ID, then its SIS User ID, then its Canvas ID, or only to --match COLUMN. Its Points "
                       "Possible row is kept, with max_total. Graded students missing from the roster and roster "
                       "students without a grade (left blank: Canvas changes nothing there) are named on stderr, "
                       "and the exit status is then 1.")
    _out(p, "")
    p.add_argument("--canvas", type=Path, required=True, metavar="ROSTER.csv",
                   help="the gradebook CSV exported from Canvas for this course")
    p.add_argument("--assignment", required=True, metavar="NAME",
                   help="the Canvas assignment's column: its name, or 'Name (ID)' as Canvas exports it to update "
                        "that assignment (a new name creates one)")
    p.add_argument("--out", dest="file", type=Path, required=True, metavar="FILE.csv", help="the file to write")
    p.add_argument("--match", metavar="COLUMN", help="match student ids to this roster column only")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("merge", help="combine the output folders of grade --shard runs",
                       description="Combine the gradebooks of several `grade --shard K/N` output folders into "
                       "DIR and write grades.csv, results.json, feedback and summary from it, as one run would. "
                       "Parts graded with other settings (course, checks, labs, sandbox) are refused.")
    p.add_argument("parts", nargs="+", type=Path, metavar="PART", help="output folders of the shards")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    _extensions(p)
    p.set_defaults(run=cmd_merge)

    p = sub.add_parser("bundle", help="make a Gradescope autograder zip",
                       description="Write a Gradescope autograder (setup.sh, run_autograder, this package and the "
                       "course) that grades /autograder/submission into /autograder/results/results.json; with "
                       "--lab, an autograder for that lab alone (one Gradescope assignment per lab).")
    p.add_argument("--out", type=Path, default=Path("autograder.zip"), metavar="FILE.zip")
    p.add_argument("--lab", metavar="NAME", help="the one lab this Gradescope assignment grades")
    p.add_argument("--hidden-visibility", choices=VISIBILITIES, default="after_published",
                   help="Gradescope's visibility of the hidden checks (default after_published; see the README)")
    p.add_argument("--leaderboard", action="store_true",
                   help="results.json carries Gradescope's leaderboard entry: the test accuracy the training labs' "
                        "recipe reached")
    p.set_defaults(run=cmd_bundle)

    p = sub.add_parser("kit", help="make the students' self-check kit (public checks only)",
                       description="Write a zip that students install with `pip install FILE.zip` (or from its "
                       "unzipped folder) to run `autograder check` on their notebooks: this package, course.toml, "
                       "the released exercises and the checks with every hidden check cut out. No source notebook, "
                       "no solution, no hidden check goes in. Needs release/ in sync with source/.")
    p.add_argument("--out", type=Path, default=Path("kit.zip"), metavar="FILE.zip",
                   help="where to write it (default kit.zip)")
    p.set_defaults(run=cmd_kit)
    return top


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N, e.g. 1/4") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: K must be between 1 and N")
    return k, n


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        course = Course(args.course.resolve()) if args.course else find_course()
        return args.run(args, course)
    except KeyboardInterrupt:
        print(f"autograder {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if _one_line(e):
            print(f"autograder {args.command}: {e}", file=sys.stderr)
            return 2
        raise


def _one_line(e: Exception) -> bool:
    """An error whose message says all a user needs (not a bug of ours, whose traceback helps)."""
    from .final import PolicyError
    from .gradebook import GradebookError
    from .sandbox import SandboxError

    helpers = sys.modules.get("utils")  # the course's utils.py, whose DatasetError is one line too
    return isinstance(e, (CourseError, OSError, sqlite3.Error, SandboxError, GradebookError, PolicyError,
                          ValueError)) or bool(helpers and isinstance(e, getattr(helpers, "DatasetError", ())))


if __name__ == "__main__":
    sys.exit(main())
