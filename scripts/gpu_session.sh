#!/usr/bin/env bash
# One lent-GPU session (about 10 minutes): the GPU benchmark table, then the four ADDP-effects variants trained in
# parallel on one GPU at the bundled model's architecture; results, logs and the two best models go to $OUT.
#
#   bash scripts/gpu_session.sh                  # on the GPU machine (wheels for missing packages in .whl/)
#   MODE=bundle bash scripts/gpu_session.sh      # only continue the bundled model, for the whole budget
#   DRY=1 OUT=/tmp/out bash scripts/gpu_session.sh   # the same flow on CPU at a toy size (checks the script)
#
# Every phase is time-boxed against BUDGET_S, so the files under $OUT come back even when a phase runs long.
set -u
T0=$(date +%s)
BUDGET_S=${BUDGET_S:-585}
OUT=${OUT:?set OUT}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
LOG="$OUT/session.log"
log() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
left() { echo $(( T0 + BUDGET_S - $(date +%s) )); }

if [ -d .whl ] && [ -z "${DRY:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >>"$LOG" 2>&1 || { log "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >>"$LOG" 2>&1 || true
$PY -c "import torch, diffusers, transformers, accelerate, pydantic; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" \
  >>"$LOG" 2>&1 || { log "imports failed"; exit 1; }

if [ -n "${DRY:-}" ]; then
  SWEEP_N=6; N_TRAIN=64; STEPS=4; BATCH=4; N_TEST=8; VAL_EVERY=2; VAL_N=4; WORKERS=2; SUITES=latent; BENCH_ARGS="--device cpu --steps 2 --repeats 1"
  ARCH="--channels 16,32,32 --text-hidden 32 --text-layers 1"; TRAIN_END=$(( $(left) - 60 ))
else
  SWEEP_N=300; N_TRAIN=150000; STEPS=4000; BATCH=256; N_TEST=500; VAL_EVERY=500; VAL_N=128; WORKERS=12; SUITES=sd15-256
  BENCH_ARGS="--device cuda --repeats 2"
  ARCH="--channels 64,128,192 --text-hidden 128 --text-layers 2 --text-heads 4"; TRAIN_END=$(( $(left) - 75 ))
fi
# the bundle's continuation: 400k samples of the seed-0 stream (stages 1-2 saw the first 300k)
[ "${MODE:-all}" = bundle ] && [ -z "${DRY:-}" ] && N_TRAIN=400000 && WORKERS=15 && BATCH=512
RUN=runs/gpu
CACHE="$RUN/shapes-train-$N_TRAIN.pt"
mkdir -p "$RUN/effects"

log "phase 1: Shapes-Ref train split, $N_TRAIN samples, $WORKERS processes"
$PY -c "
from addp_agent.train.data import cached_shapes
images, masks, texts = cached_shapes('train', $N_TRAIN, 0, 64, '$CACHE', $WORKERS)
print('generated', images.shape, masks.shape, len(texts))" >>"$LOG" 2>&1 || { log "data generation failed"; exit 1; }

if [ "${MODE:-all}" = bundle ]; then
  # fine-tune the bundled model with its recipe for the whole budget, then score it on the unseen test seed
  # the training set, its augmentation and the noise live on the GPU (--data-device auto); should that path fail
  # before a model is written, the rest of the budget trains with batches built on the CPU instead
  for DATA_DEVICE in auto cpu; do
    MINUTES=$($PY -c "print(round(max(0.5, ($(left) - 150) / 60), 2))")
    log "bundle: fine-tuning addp_agent/models/shapes_ref_small for ≤ $MINUTES min (data device $DATA_DEVICE)"
    $PY -m addp_agent train --out "$RUN/bundle" --init-from addp_agent/models/shapes_ref_small --n-train $N_TRAIN \
      --data-cache "$CACHE" --data-device $DATA_DEVICE --batch-size $BATCH --lr 4e-4 --warmup-steps 100 \
      --lr-schedule cosine --mixed-precision "$([ -n "${DRY:-}" ] && echo no || echo bf16)" --paint-weight 8 \
      --timesteps ris --augment --steps 100000 --max-minutes "$MINUTES" --val-every $VAL_EVERY --val-n $VAL_N \
      --checkpoint-every 1000 --log-every 100 --quiet >>"$LOG" 2>&1 && break
    log "training ended with $?"
    [ -d "$RUN/bundle/model" ] && break
    rm -rf "$RUN/bundle"
  done
  # the sampler defaults are re-chosen on the val split (paired sweep); the pick goes into the bundle's config
  $PY -m addp_agent sweep --model "$RUN/bundle/model" --data "shapes-gen:$SWEEP_N:0:64" --split val \
    --steps 1,2,3,4 --guidance-scale 1.5,2,3 --image-guidance-scale 1,1.5 --spacing trailing --prefer-fast-within 0.005 \
    --limit $SWEEP_N --batch-size 64 --out "$OUT/bundle-sweep.json" >>"$LOG" 2>&1 || log "sweep ended with $?"
  DEFAULTS=$($PY -c "import json; b = json.load(open('$OUT/bundle-sweep.json'))['best']
print(f\"--steps {b['steps']} --guidance-scale {b['guidance_scale']} --image-guidance-scale {b['image_guidance_scale']} \
--timestep-spacing {b['timestep_spacing']}\")" 2>>"$LOG" || echo "--steps 1 --guidance-scale 1.5 --image-guidance-scale 1 \
--timestep-spacing trailing")
  log "bundle defaults: $DEFAULTS"
  $PY -m addp_agent bundle "$RUN/bundle/model" --target "$RUN/fp16/bundle" $DEFAULTS \
    >>"$LOG" 2>&1 || { log "fp16 export failed"; exit 1; }
  $PY -m addp_agent eval --model "$RUN/fp16/bundle" --data "shapes-gen:$N_TEST:1:64" --split test --critic none \
    --max-rounds 1 --batch-size 64 --out "$RUN/eval" --quiet >>"$LOG" 2>&1 || log "eval ended with $?"
  cp "$RUN/eval/metrics.json" "$OUT/bundle-test-metrics.json" 2>/dev/null
  cp "$RUN/bundle/log.jsonl" "$OUT/bundle-log.jsonl" 2>/dev/null
  (cd "$RUN/fp16" && tar cf - bundle | split -b 15m -d - "$OUT/bundle.tar.part-")
  log "done; $(left) s of the budget left"
  ls -la "$OUT" >>"$LOG"
  exit 0
fi

log "phase 2: benchmark"
timeout 90 $PY -m benchmarks.run $BENCH_ARGS --suites $SUITES --json "$OUT/bench-256.json" >>"$LOG" 2>&1 \
  || log "benchmark 256 ended with $?"
if [ -z "${DRY:-}" ]; then
  timeout 60 $PY -m benchmarks.run --device cuda --repeats 1 --suites sd15-512 --json "$OUT/bench-512.json" \
    >>"$LOG" 2>&1 || log "benchmark 512 ended with $?"
fi

# equal budget: the same steps for all four; the time stop is a safety net (the note reports the steps reached)
EVAL_S=45
MINUTES=$($PY -c "print(round(max(0.5, ($TRAIN_END - $(( $(date +%s) - T0 )) - $EVAL_S - 25) / 60), 2))")
COMMON="--out $RUN/effects --steps $STEPS --n-train $N_TRAIN --n-test $N_TEST --batch-size $BATCH --lr 0.001
  --warmup-steps 300 --lr-schedule cosine --mixed-precision bf16 --paint-weight 8 --val-every $VAL_EVERY
  --val-n $VAL_N --infer-steps 10 --sampler ris --data-cache $CACHE $ARCH
  --max-minutes $MINUTES"
[ -n "${DRY:-}" ] && COMMON="${COMMON/--mixed-precision bf16/--mixed-precision no}"
log "phase 3: four variants in parallel, ≤ $MINUTES min of training each"
for v in baseline timesteps augment both; do
  OMP_NUM_THREADS=3 $PY -m addp_agent effects $COMMON --variant $v --threads 3 >"$RUN/effects/$v.log" 2>&1 &
done
wait
for v in baseline timesteps augment both; do
  log "$v: $(tail -n 1 "$RUN/effects/$v.log")"
done

log "phase 4: assemble effects.json"
$PY -m addp_agent effects $COMMON >>"$LOG" 2>&1 || log "assembly ended with $?"
(cd "$RUN/effects" && tar czf "$OUT/effects.tgz" effects.json effects_config.json ./*.log ./*/result.json \
  ./*/log.jsonl ./*/train_s.json ./*/model/training.json 2>/dev/null)

log "phase 5: the ADDP recipe ('both') and the best other variant by validation mIoU, fp16"
PICK=$($PY - "$RUN/effects" <<'EOF'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
scores = {}
for name in ("baseline", "timesteps", "augment", "both"):
    path = root / name / "result.json"
    if path.exists():
        result = json.loads(path.read_text())["result"]
        scores[name] = result.get("val_mIoU") or 0.0
others = sorted((n for n in scores if n != "both"), key=lambda n: -scores[n])
print(" ".join((["both"] if "both" in scores else []) + others[:1]))
EOF
)
log "picked: $PICK"
mkdir -p "$RUN/fp16"
for v in $PICK; do
  $PY -m addp_agent bundle "$RUN/effects/$v/model" --target "$RUN/fp16/$v" >>"$LOG" 2>&1 || log "fp16 $v failed"
done
if [ -n "$PICK" ]; then
  (cd "$RUN/fp16" && tar cf - $PICK | split -b 15m -d - "$OUT/models.tar.part-")
fi
log "done; $(left) s of the budget left"
ls -la "$OUT" >>"$LOG"
