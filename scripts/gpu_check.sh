#!/usr/bin/env bash
# One short GPU run: grade a few reference submissions with --device cuda (the recipe checks train on
# the GPU), print each check's mean time and the accuracies the recipes reached, and fail unless every
# reference got full marks (the thresholds must hold on the GPU as on the CPU).
#   scripts/gpu_check.sh [N]     (needs the package installed and Fashion-MNIST: autograder data fashion-mnist)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-3}"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: CUDA is not available')"
for i in $(seq 1 "$n"); do
    mkdir -p "$work/class/reference$i"
    cp source/*/*_exercise.ipynb "$work/class/reference$i/"
done
SECONDS=0
"$python" -m autograder grade "$work/class" --out "$work/out" --device cuda -j 2 --quiet
echo "graded $n reference submissions with --device cuda in ${SECONDS} s"
"$python" - "$work/out" "$n" <<'PY'
import sqlite3, struct, sys
db = sqlite3.connect(f"{sys.argv[1]}/gradebook.sqlite")
print("seconds per check (mean over submissions; CPU seconds of the worker):")
for check, seconds, cpu in db.execute("SELECT check_name, avg(seconds), avg(cpu_seconds) FROM checks "
                                      "GROUP BY lab, check_name ORDER BY lab, min(position)"):
    print(f"  {seconds:7.2f}  {cpu:7.2f}  {check}")
print("accuracies reached:")
for name, blob in db.execute("SELECT name, data FROM artifacts WHERE name LIKE '%accuracy' ORDER BY name, student"):
    print(f"  {struct.unpack('f', blob)[0]:.4f}  {name}")
totals = [t for (t,) in db.execute("SELECT sum(points * passed) FROM checks GROUP BY student")]
if len(totals) != int(sys.argv[2]) or any(t != 100 for t in totals):
    sys.exit(f"gpu_check: FAILED, reference totals {totals} (all must be 100)")
print("gpu_check: OK, every reference got 100 with the recipes trained on CUDA")
PY
