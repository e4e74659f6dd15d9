#!/usr/bin/env bash
# One short GPU run: grade a few reference submissions with --device cuda, print each check's time and
# the accuracies the recipes reached, and fail unless the training really ran on CUDA and every
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
echo "graded $n reference submissions on CUDA in ${SECONDS} s"
"$python" - "$work/out" "$n" <<'PY'
import sqlite3, struct, sys
db = sqlite3.connect(f"{sys.argv[1]}/gradebook.sqlite")
print("seconds per check (mean over submissions):")
for unit, check, seconds in db.execute("SELECT unit, check_name, avg(seconds) FROM checks GROUP BY unit, check_name "
                                       "ORDER BY min(position)"):
    print(f"  {seconds:7.2f}  {check}")
value = lambda blob: struct.unpack("f", blob)[0]
print("accuracies reached:")
for name, blob in db.execute("SELECT name, data FROM artifacts WHERE name LIKE '%accuracy' ORDER BY name, student"):
    print(f"  {value(blob):.4f}  {name}")
cpu = [name for name, blob in db.execute("SELECT name, data FROM artifacts WHERE name LIKE '%on cuda'") if value(blob) != 1]
totals = [t for (t,) in db.execute("SELECT sum(points * passed) FROM checks GROUP BY student")]
if cpu:
    sys.exit(f"gpu_check: FAILED, trained on the CPU: {sorted(set(cpu))}")
if len(totals) != int(sys.argv[2]) or any(t != 100 for t in totals):
    sys.exit(f"gpu_check: FAILED, reference totals {totals} (all must be 100)")
print("gpu_check: OK, every recipe trained on CUDA and every reference got 100")
PY
