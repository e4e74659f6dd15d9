"""Calibrate the accuracy threshold and ceiling of the trainer checks.

Runs the source solutions of train_online and train_minibatch exactly as the grader's recipe
checks do (the worker's dispatcher, the provided template_net, the trainer's defaults, the
training set) over many seeds, and scores each on the test set with the grader's own scoring
(checks/trainers.py). Prints a markdown table (worst, mean, best, standard deviation) and what it
implies: the threshold, the lower of the worst seed less a margin and the mean less six standard
deviations, rounded down, so that a correct trainer never fails by chance, on other seeds or on a
GPU's different random streams either; and the ceiling, the best seed plus a margin, rounded up,
above which a trainer did not train by the lecture's rule alone (a TA is asked to look). The
reference is the instructor's code, so it runs here in-process, without a sandbox.

    python scripts/calibrate.py --seeds 100 [--device cuda]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch

from autograder.course import find_course
from autograder.extract import extract
from autograder.messages import Build, Call, TrainingSet
from autograder.worker import Dispatcher

MARGIN, SPREADS = 0.03, 6  # the threshold's, below the worst seed
CEILING_MARGIN = 0.02  # the ceiling's, above the best seed


def main() -> int | str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--trainers", nargs="+", default=["train_online", "train_minibatch"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads, as in a grading worker (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    course = find_course()
    sys.path.insert(0, str(course.checks))
    import trainers

    helpers = course.helpers()
    test = tuple(t.to(args.device) for t in helpers.load(course.dataset, course.withheld_split))
    images, labels = helpers.load(course.dataset, course.train_split)
    code = extract(course, tuple(lab.exercise for lab in course.labs))
    dispatcher = Dispatcher({"images": images, "labels": labels}, args.device)
    done = dispatcher.setup(tuple(s for lab in code.values() for s in lab.setup))
    if done.error:
        return f"calibrate: the provided cells failed: {done.error}"
    loaded = dispatcher.load({u: c for lab in code.values() for u, c in lab.units.items()})
    failed = {u: e for u, e in loaded.errors.items() if e}
    if failed:
        return f"calibrate: the reference solutions failed to load: {failed}"

    print(f"Reference accuracies on the Fashion-MNIST test set, {args.seeds} seeds (0..{args.seeds - 1}), "
          f"device {args.device}, {args.threads} thread(s), torch {torch.__version__}; threshold = "
          f"min(worst - {MARGIN}, mean - {SPREADS} sd), rounded down; ceiling = best + {CEILING_MARGIN}, rounded up to "
          f"the next 0.005.\n")
    print("| trainer | net | seeds | worst | mean | best | sd | threshold | ceiling | seconds per run |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for trainer in args.trainers:
        scores, started = [], time.perf_counter()
        for seed in range(args.seeds):
            net = Build("template_net", (trainers.PIXELS, trainers.CLASSES))
            outcome = dispatcher.call(Call(trainer, (net, TrainingSet("images"), TrainingSet("labels")),
                                           seed=seed, on_device=True))
            scores.append(trainers.score(outcome.args[0], test)[0])
        seconds = (time.perf_counter() - started) / args.seeds
        mean, sd = statistics.mean(scores), statistics.stdev(scores)
        threshold = math.floor(min(min(scores) - MARGIN, mean - SPREADS * sd) * 100) / 100
        ceiling = math.ceil((max(scores) + CEILING_MARGIN) * 200) / 200
        print(f"| {trainer} | template_net | {args.seeds} | {min(scores):.4f} | {mean:.4f} | {max(scores):.4f} "
              f"| {sd:.4f} | {threshold:.2f} | {ceiling:.3f} | {seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
