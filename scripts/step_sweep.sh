#!/usr/bin/env bash
# The correction-loop issue's item 5: single and corrected rounds at 1, 2, 4 and 10 steps, restarting, resuming from
# the first round's step k, or restarting corrected rounds with more steps; for a critic that reads ground truth
# (oracle) and one that reads none (self); optionally in each correction form.
# Usage: OUT=runs/step-sweep bash scripts/step_sweep.sh   (finished runs are skipped; then:
#        python scripts/step_sweep_table.py $OUT)
set -euo pipefail
OUT=${OUT:-runs/step-sweep}
DATA=${DATA:-shapes-gen:200:11:64:crowded}
CRITICS=${CRITICS:-"oracle self"}
SETTINGS=${SETTINGS:-"1 2 2:1 4 4:1 4:2 10 10:1 10:5 1+2 1+4 2+4"}  # steps[:resume_step] or steps+correction_steps
FORMS=${FORMS:-additive}  # additive (the default) | replace | paper
for form in $FORMS; do
  for critic in $CRITICS; do
    for setting in $SETTINGS; do
      steps=${setting%%[:+]*}; extra=(); name="$critic-s$steps"
      if [[ $setting == *:* ]]; then extra+=(--resume-step "${setting#*:}"); name="$name-k${setting#*:}"; fi
      if [[ $setting == *+* ]]; then extra+=(--correction-steps "${setting#*+}"); name="$name-c${setting#*+}"; fi
      if [[ $form != additive ]]; then extra+=(--correction-mode "$form"); name="$name-$form"; fi
      [[ -f $OUT/$name/metrics.json ]] && continue
      echo "== $name"
      addp eval --data "$DATA" --split test --critic "$critic" --max-rounds 3 --steps "$steps" "${extra[@]}" \
        --out "$OUT/$name" --quiet
    done
  done
done
