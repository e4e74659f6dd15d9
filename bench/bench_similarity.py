"""How long the review queue's similarity search takes for a class: every unit of the course, each
student's source a distinct variant of the reference solution (names renamed, comments and blank
lines added, a few statements of their own), some left at the stub, some planted copy pairs.

    python bench/bench_similarity.py [--students 200] [--repeat 3]

Prints the seconds (and CPU seconds: on a shared machine the wall clock says more about the
neighbours) for all units, parsing included (nothing is cached between repeats), and whether every
planted pair, and nothing else, was found; exits 1 otherwise.
"""
from __future__ import annotations

import argparse
import ast
import random
import re
import time

from autograder import similarity
from autograder.course import find_course, read_notebook, unit_cells


def renamed(source: str, rng: random.Random) -> str:
    """`source` with the names it binds renamed at random, comments and blank lines added."""
    bound = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    names = {n: f"{rng.choice(['v', 'tmp', 'my', 'a'])}_{rng.randrange(10**6)}" for n in bound}
    text = re.sub(r"(?<![.\w])([A-Za-z_]\w*)\b", lambda m: names.get(m.group(1), m.group(1)), source)
    lines = []
    for line in text.splitlines():
        lines.append(line + (f"  # note {rng.randrange(10**6)}" if rng.random() < 0.3 else ""))
        if rng.random() < 0.2:
            lines.append("")
    return "\n".join(lines) + "\n"


def own_statements(source: str, rng: random.Random) -> str:
    """Statements of a student's own before each `return`: what makes most units differ."""
    def extra(m: re.Match) -> str:
        indent = m.group(1)
        return "".join(f"{indent}t{i}_{rng.randrange(10**6)} = torch.zeros({rng.randrange(2, 99)}) * "
                       f"{rng.random():.3f} + {rng.randrange(100)}\n" for i in range(rng.randrange(4, 8))) + m.group(0)
    return re.sub(r"^([ \t]+)return\b", extra, source, flags=re.M)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    course = find_course()
    stubs = course.stubs()
    reference = {}
    for lab in course.labs:
        nb = read_notebook(lab.exercise)
        reference.update({unit: re.sub(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", "", nb.cells[i].source, flags=re.M)
                          for unit, i in unit_cells(nb).items()})
    rng = random.Random(0)
    classes, planted = {}, {}
    for unit in course.units:
        sources = {}
        for n in range(args.students):
            student = f"s{n:04d}"
            kind = rng.random()
            if kind < 0.1:
                sources[student] = stubs[unit]
            elif kind < 0.3:
                sources[student] = renamed(reference[unit], rng)  # common: many write it alike
            else:
                sources[student] = renamed(own_statements(reference[unit], rng), rng)
        pairs = [(f"s{2 * i:04d}", f"s{2 * i + 1:04d}") for i in range(5)]
        for a, b in pairs:
            sources[a] = renamed(own_statements(reference[unit], rng), rng)
            sources[b] = renamed(sources[a], rng)
        classes[unit], planted[unit] = sources, {pair for pair in pairs}
    times, cpu = [], []
    for _ in range(args.repeat):
        similarity.normalized.cache_clear()
        started, started_cpu = time.perf_counter(), time.process_time()
        found = {unit: similarity.similar(sources, stubs[unit]) for unit, sources in classes.items()}
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    wrong = {unit: [g.students for g in groups if g.students not in planted[unit]] for unit, groups in found.items()}
    missed = {unit: planted[unit] - {g.students for g in groups} for unit, groups in found.items()}
    print(f"{args.students} students x {len(classes)} units: {min(times):.2f} s, {min(cpu):.2f} s of CPU "
          f"(best of {args.repeat}; all: {', '.join(f'{t:.2f}' for t in times)} s)")
    print(f"planted pairs found: {sum(len(p) - len(missed[u]) for u, p in planted.items())} of "
          f"{sum(map(len, planted.values()))}; other groups: {sum(map(len, wrong.values()))}")
    return 0 if not any(wrong.values()) and not any(missed.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
