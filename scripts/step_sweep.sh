#!/usr/bin/env bash
# Item 5 of the correction-loop issue: single and corrected rounds at 1, 2, 4 and 10 steps, restarting or resuming
# from the first round's step k, for a ground-truth critic (oracle) and one that reads none (self).
# Usage: OUT=runs/step-sweep bash scripts/step_sweep.sh   (each run resumes; then: python scripts/step_sweep_table.py $OUT)
set -euo pipefail
OUT=${OUT:-runs/step-sweep}
DATA=${DATA:-shapes-gen:200:11:64:crowded}
CRITICS=${CRITICS:-"oracle self"}
SETTINGS=${SETTINGS:-"1 2 2:1 4 4:1 4:2 10 10:1 10:5 1+2 1+4"}  # steps[:resume_step] or steps+correction_steps
for critic in $CRITICS; do
  for setting in $SETTINGS; do
    steps=${setting%%[:+]*}; resume=""; name="$critic-s$steps"
    if [[ $setting == *:* ]]; then resume="--resume-step ${setting#*:}"; name="$name-k${setting#*:}"; fi
    if [[ $setting == *+* ]]; then resume="--correction-steps ${setting#*+}"; name="$name-c${setting#*+}"; fi
    [[ -f $OUT/$name/metrics.json ]] && continue
    echo "== $name"
    addp eval --data "$DATA" --split test --critic "$critic" --max-rounds 3 --steps "$steps" $resume \
      --out "$OUT/$name" --quiet
  done
done
