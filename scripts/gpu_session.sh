#!/usr/bin/env bash
# One lent-GPU session, one shot; everything that matters goes to $OUT, every phase is time-boxed against BUDGET_S.
#
#   OUT=/out bash scripts/gpu_session.sh                 # MODE=perf (default, ~12 min): the GPU performance suite
#   DRY=1 OUT=/tmp/out bash scripts/gpu_session.sh       # the same flow on CPU at tiny sizes, 1 repeat
#   MODE=effects bash scripts/gpu_session.sh             # the RIS effects study at the bundled architecture
#   MODE=bundle bash scripts/gpu_session.sh              # only continue the bundled model, for the whole budget
#
# MODE=perf writes bench-256.json and bench-512.json (SD-1.5-size InstructPix2Pix, random weights, engine vs stock
# diffusers: one round, 3-round corrected session, 16 concurrent requests; ≥ 3 round-robin repeats, output checks),
# concurrency.json (B = 1, 4, 16, 64: p50/p95 latency per request, throughput vs stock, plus a profiler summary of
# one plain and one fast round), tool-server.json (`addp mcp --http` on loopback, the MCP SDK client, 16 concurrent
# clients segment then refine vs one client), marigold.json (depth engine vs stock MarigoldDepthPipeline, SD-2-size
# random weights, ensemble 1 and 10), parts.jsonl (each part's exit code and seconds), a log per part, and
# summary.json / summary.md (every target: met, missed or not measured).
set -u
T0=$(date +%s)
MODE=${MODE:-perf}
BUDGET_S=${BUDGET_S:-$([ "$MODE" = perf ] && echo 720 || echo 585)}
OUT=${OUT:?set OUT}
mkdir -p "$OUT"
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

# part NAME CAP LATER COMMAND...: run COMMAND with a time limit of at least CAP seconds, more when earlier parts
# left time over (everything but LATER seconds, the caps of the parts still to come); skipped when < 30 s are left
part() {
  local name=$1 cap=$2 later=$3; shift 3
  local limit=$(( $(left) - later - 10 )); [ "$limit" -lt "$cap" ] && limit=$cap
  [ "$limit" -gt $(( $(left) - 10 )) ] && limit=$(( $(left) - 10 ))
  if [ "$limit" -lt 30 ]; then
    log "$name: skipped ($(left) s left)"
    echo "{\"part\": \"$name\", \"rc\": null, \"seconds\": 0, \"limit_s\": $limit, \"skipped\": true}" >>"$OUT/parts.jsonl"
    return
  fi
  log "$name: ≤ $limit s"
  local start=$(date +%s)
  timeout -k 10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$? seconds=$(( $(date +%s) - start ))
  log "$name: exit $rc after $seconds s"
  echo "{\"part\": \"$name\", \"rc\": $rc, \"seconds\": $seconds, \"limit_s\": $limit, \"skipped\": false}" >>"$OUT/parts.jsonl"
}

case "$MODE" in perf|effects|bundle) ;; *) log "MODE must be perf, effects or bundle, got '$MODE'"; exit 2;; esac

if [ "$MODE" = perf ]; then
  if [ -n "${DRY:-}" ]; then
    DEV=cpu; S256=latent; S512=latent; STEPS=2; REPEATS=1; TOOL="--suite bundled"; DEPTH="--size tiny"
  else
    DEV=cuda; S256=sd15-256; S512=sd15-512; STEPS=20; REPEATS=3; TOOL="--suite sd15-256 --steps 20"; DEPTH="--size sd2"
  fi
  log "perf: $DEV, $REPEATS repeat(s), budget $BUDGET_S s"
  part bench-256 170 550 $PY -m benchmarks.run --device $DEV --suites $S256 --steps $STEPS --repeats $REPEATS \
    --concurrency 16 --json "$OUT/bench-256.json"
  part bench-512 220 330 $PY -m benchmarks.run --device $DEV --suites $S512 --steps $STEPS --repeats $REPEATS \
    --concurrency 16 --json "$OUT/bench-512.json"
  part marigold 100 230 $PY -m benchmarks.marigold --device $DEV $DEPTH --steps 4 --ensemble 10 \
    --repeats $REPEATS --json "$OUT/marigold.json"
  part tool-server 120 110 $PY -m benchmarks.tool_server $TOOL --clients 16 --repeats $REPEATS \
    --json "$OUT/tool-server.json"
  part concurrency 110 0 $PY -m benchmarks.concurrency --device $DEV --suite $S256 --batches 1,4,16,64 \
    --steps $STEPS --repeats $REPEATS --profile --json "$OUT/concurrency.json"
  $PY -m benchmarks.gpu_summary "$OUT" >>"$LOG" 2>&1 || log "summary failed"
  log "done; $(left) s of the budget left"
  ls -la "$OUT" >>"$LOG"
  exit 0
fi

if [ -n "${DRY:-}" ]; then
  SWEEP_N=6; N_TRAIN=64; STEPS=4; BATCH=4; N_TEST=8; VAL_EVERY=2; VAL_N=4; WORKERS=2
  ARCH="--channels 16,32,32 --text-hidden 32 --text-layers 1"; TRAIN_END=$(( $(left) - 60 ))
else
  SWEEP_N=300; N_TRAIN=150000; STEPS=4000; BATCH=256; N_TEST=500; VAL_EVERY=500; VAL_N=128; WORKERS=12
  ARCH="--channels 64,128,192 --text-hidden 128 --text-layers 2 --text-heads 4"; TRAIN_END=$(( $(left) - 75 ))
fi
# the bundle's continuation: 400k samples of the seed-0 stream (stages 1-2 saw the first 300k)
[ "$MODE" = bundle ] && [ -z "${DRY:-}" ] && N_TRAIN=400000 && WORKERS=15 && BATCH=512
RUN=runs/gpu
CACHE="$RUN/shapes-train-$N_TRAIN.pt"
mkdir -p "$RUN/effects"

log "phase 1: Shapes-Ref train split, $N_TRAIN samples, $WORKERS processes"
$PY -c "
from addp_agent.train.data import cached_shapes
images, masks, texts = cached_shapes('train', $N_TRAIN, 0, 64, '$CACHE', $WORKERS)
print('generated', images.shape, masks.shape, len(texts))" >>"$LOG" 2>&1 || { log "data generation failed"; exit 1; }

if [ "$MODE" = bundle ]; then
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

# equal steps for every variant and seed; the time stop is only a safety net (a run it ends is left out of the
# tables); each variant's seeds run one after another in its own process, the four variants in parallel
EVAL_S=90
SEEDS=${SEEDS:-3}
MINUTES=$($PY -c "print(round(max(0.3, ($TRAIN_END - $(( $(date +%s) - T0 )) - $EVAL_S - 25) / 60 / $SEEDS), 2))")
COMMON="--task ris --out $RUN/effects --data shapes-gen:$N_TRAIN:0:64 --seeds $SEEDS --steps $STEPS
  --n-val $VAL_N --n-test $N_TEST --batch-size $BATCH --lr 0.001 --warmup-steps 300 --lr-schedule cosine
  --mixed-precision bf16 --paint-weight 8 --timesteps ris $ARCH --max-minutes $MINUTES"
[ -n "${DRY:-}" ] && COMMON="${COMMON/--mixed-precision bf16/--mixed-precision no}"
ln -sf "$PWD/$CACHE" "$RUN/effects/train-data.pt"  # the phase-1 arrays are the study's training set
log "phase 2: four variants in parallel, $SEEDS seeds each, ≤ $MINUTES min of training per run"
for v in baseline timesteps augment both; do
  OMP_NUM_THREADS=3 $PY -m addp_agent effects $COMMON --variant $v --threads 3 >"$RUN/effects/$v.log" 2>&1 &
done
wait
for v in baseline timesteps augment both; do
  log "$v: $(tail -n 1 "$RUN/effects/$v.log")"
done

log "phase 3: assemble effects.json"
$PY -m addp_agent effects $COMMON >>"$LOG" 2>&1 || log "assembly ended with $?"
(cd "$RUN/effects" && tar czf "$OUT/effects.tgz" effects.json effects_config.json ./*.log ./*/*/result.json \
  ./*/*/log.jsonl ./*/*/timing.json ./*/*/model/training.json 2>/dev/null)

log "phase 4: the ADDP recipe ('both') and the best other variant by val mIoU (seed 0), fp16"
PICK=$($PY - "$RUN/effects" <<'EOF'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
scores = {}
for name in ("baseline", "timesteps", "augment", "both"):
    path = root / name / "seed-0" / "result.json"
    if path.exists():
        rows = json.loads(path.read_text())["result"]["selection"]["rows"]
        scores[name] = max((row["metrics"].get("mIoU") or 0.0) for row in rows)
others = sorted((n for n in scores if n != "both"), key=lambda n: -scores[n])
print(" ".join((["both"] if "both" in scores else []) + others[:1]))
EOF
)
log "picked: $PICK"
mkdir -p "$RUN/fp16"
for v in $PICK; do
  $PY -m addp_agent bundle "$RUN/effects/$v/seed-0/model" --target "$RUN/fp16/$v" >>"$LOG" 2>&1 || log "fp16 $v failed"
done
if [ -n "$PICK" ]; then
  (cd "$RUN/fp16" && tar cf - $PICK | split -b 15m -d - "$OUT/models.tar.part-")
fi
log "done; $(left) s of the budget left"
ls -la "$OUT" >>"$LOG"
