#!/usr/bin/env bash
# The Fashion-MNIST reference run behind checkpoints/fashion_mnist, docs/results.md and the
# data in results/ (results/README.md maps each file to the stage that wrote it).
#
#   nohup bash scripts/reference_run.sh runs/reference > runs/reference.log 2>&1 &
#
# Training in legs (docs/training.md): one run of STEPS steps, one learning-rate and alpha
# schedule, trained by several invocations of the same command. LEG_MINUTES=M ends each
# invocation's training at the first loop boundary after M minutes (STOP_AT_STEP=N at
# step N) with a checkpoint; the script then exits 0 saying where it stopped, and the
# same command continues from there. The stages after training run in the invocation
# that finishes it. A SIGTERM/SIGINT to the training process (e.g. to the script's whole
# process group: kill -TERM -- -PGID) stops it at the next loop boundary with a
# checkpoint too (exit 143/130); run the same command again.
#   STEPS=20000 LEG_MINUTES=100 GT_ONLY=0 GIN_FILE=gin/fashion_mnist/magnets_small.gin \
#     nohup bash scripts/reference_run.sh runs/small_20k >> runs/small_20k.log 2>&1 &
#
# The reference model (checkpoints/fashion_mnist/magnets_reference): 8000 steps on one schedule,
# re-run after each leg (docs/results.md):
#   STEPS=8000 LEG_MINUTES=145 GT_ONLY=0 GIN_FILE=gin/fashion_mnist/magnets_reference.gin \
#     REUSE_TOKENIZER=checkpoints/fashion_mnist/tokenizer \
#     SAVE_LEG_TO=checkpoints/fashion_mnist/legs/reference_8k \
#     RESUME_FROM=checkpoints/fashion_mnist/legs/reference_8k \
#     nohup bash scripts/reference_run.sh runs/reference_8k >> runs/reference_8k.log 2>&1 &
#
# The earlier 6x128 reference (magnets_small, replaced by checkpoints/fashion_mnist/magnets_reference)
# in three legs: 1500 steps
# (1 h 45 min with its evaluations)
#   STEPS=1500 GT_ONLY=0 GIN_FILE=gin/fashion_mnist/magnets_small.gin \
#     nohup bash scripts/reference_run.sh runs/reference_small > runs/reference_small.log 2>&1 &
# then resumed to 3000 steps (RESUME_FROM: copy that run's checkpoints, train on to STEPS):
#   STEPS=3000 GT_ONLY=0 GIN_FILE=gin/fashion_mnist/magnets_small.gin \
#     RESUME_FROM=runs/reference_small/magnets \
#     nohup bash scripts/reference_run.sh runs/reference_small_3k > runs/reference_small_3k.log 2>&1 &
# and the same again from that run to 6000 steps (that model; RESUME_FROM restarts
# the schedules, a warm restart: legs with LEG_MINUTES keep one schedule instead):
#   STEPS=6000 GT_ONLY=0 GIN_FILE=gin/fashion_mnist/magnets_small.gin \
#     RESUME_FROM=runs/reference_small_3k/magnets \
#     nohup bash scripts/reference_run.sh runs/reference_small_6k > runs/reference_small_6k.log 2>&1 &
#
# Defaults (tiny preset, ~2.5 hours on 2 cores): tokenizer (or REUSE_TOKENIZER=dir),
# tokens, the MaGNeTS model and a ground-truth-only twin (one core each, in parallel),
# the class-accuracy classifier, the headline evaluations (n=2000, class accuracy; guidance scale 2,
# then GUIDANCE_CLASS=12 for the class-conditional pair), the findings sweeps,
# the findings table, the measured speedup (float32 and bfloat16, one run) and the sampling
# settings tuned alike for both decodes (SAMPLING_GRID). Every step
# skips work already done (stage markers in OUT/stages), so an interrupted run resumes
# where it stopped.
set -euo pipefail
OUT=${1:-runs/reference}
STEPS=${STEPS:-3000}
N=${N:-2000}
SWEEP_N=${SWEEP_N:-1000}
GIN_FILE=${GIN_FILE:-gin/fashion_mnist/magnets_tiny.gin}
BATCH=${BATCH:-64}
GUIDANCE_CLASS=${GUIDANCE_CLASS:-12}  # guidance scale of the second headline pair (class accuracy)
GT_ONLY=${GT_ONLY:-1}   # 0: skip the ground-truth-only twin (finding 5) and its sweep
# Sampling settings tuned alike for MaGNeTS and MaskGIT++ at the end (sweep_schedules.py's
# sampling family at SWEEP_N, then each at its best setting at N): space-separated
# NAME=V1,V2,... specs; empty skips the tuning.
SAMPLING_GRID=${SAMPLING_GRID-guidance_scale=2,4 temperature_bias=0.5,1,1.5}
# RESUME_FROM=<run>/magnets: start the MaGNeTS model from that run's latest checkpoint (copied;
# the source is never written) and train on to STEPS. The learning-rate and alpha schedules
# then span STEPS, so at the resumed step they jump to their STEPS-long values.
RESUME_FROM=${RESUME_FROM:-}
# SAVE_LEG_TO=DIR: after a leg that did not finish the run, make DIR/checkpoints hold only
# the MaGNeTS model's newest checkpoint (plus its training status, summary and TensorBoard
# curves): small enough to commit, so a leg survives a machine reset. With the same STEPS,
# RESUME_FROM=DIR on a fresh OUT continues the one schedule exactly where the leg stopped.
# The leg that finishes the run carries its final checkpoint there too, before evaluating.
SAVE_LEG_TO=${SAVE_LEG_TO:-}
LEG_MINUTES=${LEG_MINUTES:-}    # end this invocation's training leg after M minutes
STOP_AT_STEP=${STOP_AT_STEP:-}  # end it at step N (of STEPS)
export TF_CPP_MIN_LOG_LEVEL=2
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # this clone's package, installed or not
mkdir -p "$OUT/stages"

logged() {  # logged NAME COMMAND...: runs COMMAND, appending to OUT/NAME.log
  local name=$1; shift
  echo "[$name] $*"
  # Appended, so that an interrupted stage's log (e.g. the first leg of a training that
  # resumes from its checkpoint) is kept.
  echo "== $(date -u +%FT%TZ) $*" >> "$OUT/$name.log"
  "$@" >> "$OUT/$name.log" 2>&1
}

stage() {  # stage NAME COMMAND...: runs COMMAND once (logged)
  local name=$1; shift
  if [[ -e "$OUT/stages/$name.done" ]]; then echo "[$name] done before"; return; fi
  logged "$name" "$@"
  touch "$OUT/stages/$name.done"
}

carry_leg() {  # carry_leg MODEL_DIR DIR: the newest checkpoint and the leg's records to DIR
  python -c "import sys; from magnets_tf.training import checkpoint_files as c; \
print(c.carry_newest(sys.argv[1] + '/checkpoints', sys.argv[2] + '/checkpoints'))" "$1" "$2"
  cp "$1/training_status.json" "$1/train_summary.json" "$1/operative_config.gin" "$2/"
  for run in train eval; do
    [[ -d "$1/$run" ]] && mkdir -p "$2/$run" && cp "$1/$run"/events.out.tfevents.* "$2/$run/"
  done
  return 0
}

finished() {  # finished MODEL_DIR: its exported model is that of the run's last step
  grep -q '"complete": true' "$1/training_status.json" 2>/dev/null
}

if [[ -n "$RESUME_FROM" ]]; then
  if [[ "$GT_ONLY" == 1 ]]; then
    echo "RESUME_FROM continues the MaGNeTS model only: set GT_ONLY=0" >&2; exit 2
  fi
  if [[ ! -e "$RESUME_FROM/checkpoints/checkpoint" ]]; then
    echo "RESUME_FROM=$RESUME_FROM has no checkpoints/checkpoint (not a tools/train.py model_dir?)" >&2
    exit 2
  fi
  if [[ ! -e "$OUT/magnets/checkpoints" ]]; then
    mkdir -p "$OUT/magnets" && cp -r "$RESUME_FROM/checkpoints" "$OUT/magnets/"
    # The earlier legs' summary: train_summary.json's history then spans the whole run.
    [[ -e "$RESUME_FROM/train_summary.json" ]] && cp "$RESUME_FROM/train_summary.json" "$OUT/magnets/"
    for run in train eval; do  # the earlier legs' TensorBoard curves, when there are any
      [[ -d "$RESUME_FROM/$run" ]] && cp -r "$RESUME_FROM/$run" "$OUT/magnets/"
    done
  fi
fi

TOKENIZER=${REUSE_TOKENIZER:-$OUT/tokenizer}
if [[ -z "${REUSE_TOKENIZER:-}" ]]; then
  stage tokenizer python tools/train_tokenizer.py --gin_file=gin/fashion_mnist/tokenizer.gin \
    --model_dir="$TOKENIZER" --progress=false
fi
stage tokens python tools/tokenize_dataset.py --tokenizer_dir="$TOKENIZER" \
  --dataset=fashion_mnist --output_dir="$OUT/tokens" --overwrite

LEG=()
[[ -n "$LEG_MINUTES" ]] && LEG+=(--max_wall_minutes="$LEG_MINUTES")
[[ -n "$STOP_AT_STEP" ]] && LEG+=(--stop_at_step="$STOP_AT_STEP")
train() {  # train NAME CORE EXTRA_BINDING...: one leg; the stage is done once training is
  local name=$1 core=$2; shift 2
  if [[ -e "$OUT/stages/train_$name.done" ]]; then echo "[train_$name] done before"; return; fi
  logged "train_$name" taskset -c "$core" python tools/train.py \
    --gin_file="$GIN_FILE" --model_dir="$OUT/$name" \
    --train_steps="$STEPS" --progress=false "${LEG[@]}" \
    --gin_bindings="TOKENS_DIR='$OUT/tokens/train'" --gin_bindings="train.batch_size=$BATCH" \
    --gin_bindings="train.checkpoint_every=250" --gin_bindings="train.sample_every=1000" "$@"
  if finished "$OUT/$name"; then
    touch "$OUT/stages/train_$name.done"
  else
    echo "[train_$name] $(tail -1 "$OUT/train_$name.log")"
  fi
}
MODELS=(magnets)
if [[ "$GT_ONLY" == 1 ]]; then
  MODELS+=(gt_only)
  train magnets 1 & magnets_pid=$!
  train gt_only 0 --gin_bindings="NestedMaskGitTrainer.loss_mode='gt_only'" & gt_only_pid=$!
  status=0
  wait "$magnets_pid" || status=$?
  wait "$gt_only_pid" || status=$?
  (( status == 0 )) || exit "$status"
else
  train magnets 0,1
fi
for name in "${MODELS[@]}"; do
  if [[ ! -e "$OUT/stages/train_$name.done" ]]; then
    echo "training leg over: $OUT/$name is not finished; run the same command again to continue"
    if [[ -n "$SAVE_LEG_TO" && "$name" == magnets ]]; then
      carry_leg "$OUT/magnets" "$SAVE_LEG_TO"
      echo "carried its newest checkpoint to $SAVE_LEG_TO: on another machine continue with" \
        "RESUME_FROM=$SAVE_LEG_TO and the same STEPS (one schedule)"
    fi
    exit 0
  fi
done
if [[ -n "$SAVE_LEG_TO" && ! -e "$OUT/stages/carry_final.done" ]]; then
  # The finished model too: a machine reset during the evaluations below then costs no
  # training (RESUME_FROM=SAVE_LEG_TO on a fresh OUT restores the last step and goes on to
  # the evaluations).
  carry_leg "$OUT/magnets" "$SAVE_LEG_TO"
  touch "$OUT/stages/carry_final.done"
  echo "training finished; carried its final checkpoint to $SAVE_LEG_TO (commit it)"
fi

stage classifier python tools/train_classifier.py --dataset=fashion_mnist \
  --model_dir="$OUT/classifier" --epochs=3

COMMON=(--model_dir="$OUT/magnets" --tokenizer_dir="$TOKENIZER" --reference=fashion_mnist:test
        --steps=12 --cfg_last=4 --batch_size=50 --num_samples="$N"
        --classifier_dir="$OUT/classifier")
# The two decodes compared: MaGNeTS (its schedule, cache refreshed at model changes) and
# MaskGIT++ (the full model every step, no cache).
declare -A SCHEDULE=([magnets]=8:3,4:3,2:3,1:3 [maskgit_pp]=1:12)
declare -A DECODE=([magnets]="--cache=true --refresh=model_change" [maskgit_pp]="--cache=false")
# Headline pairs: guidance scale 2 (the sweeps' setting; stages eval_magnets, eval_maskgit_pp),
# then GUIDANCE_CLASS, the class-conditional setting (stages eval_magnets_g12, ...).
for scale in 2.0 "$GUIDANCE_CLASS"; do
  suffix=$([[ "$scale" == 2.0 ]] && echo "" || echo "_g$scale")
  for plan in magnets maskgit_pp; do
    # shellcheck disable=SC2086  # DECODE holds several flags
    stage "eval_$plan$suffix" python tools/evaluate.py "${COMMON[@]}" --guidance_scale="$scale" \
      --schedule="${SCHEDULE[$plan]}" ${DECODE[$plan]} --output_dir="$OUT/eval/$plan$suffix"
  done
done
stage sweep python tools/sweep_schedules.py --model_dir="$OUT/magnets" \
  --tokenizer_dir="$TOKENIZER" --families=baseline,nested,cache,scale_down \
  --num_samples="$SWEEP_N" --batch_size=50 --gin_bindings="make_plan.guidance_steps=4" \
  --gin_bindings="make_plan.guidance_scale=2.0" --output_dir="$OUT/sweep"
if [[ "$GT_ONLY" == 1 ]]; then
  stage sweep_gt_only python tools/sweep_schedules.py --model_dir="$OUT/gt_only" \
    --tokenizer_dir="$TOKENIZER" --families=baseline,nested \
    --num_samples="$SWEEP_N" --batch_size=50 --gin_bindings="make_plan.guidance_steps=4" \
    --gin_bindings="make_plan.guidance_scale=2.0" --output_dir="$OUT/sweep_gt_only"
fi
GT_CSV=()
[[ "$GT_ONLY" == 1 ]] && GT_CSV=(--gt_only_csv="$OUT/sweep_gt_only/sweep.csv")
stage findings python tools/findings_report.py --sweep_csv="$OUT/sweep/sweep.csv" \
  "${GT_CSV[@]}" --output="$OUT/findings.md"
# The measured speedup in float32 and bfloat16, the two dtypes interleaved in one run.
stage benchmark python tools/benchmark.py --model_dir="$OUT/magnets" --steps=12 --cfg_last=4 \
  --batch_size=50 --repeats=5 --compare_compute_dtypes=float32,bfloat16 \
  --output_json="$OUT/benchmark.json"
if [[ -n "$SAMPLING_GRID" ]]; then
  GRID=()
  for spec in $SAMPLING_GRID; do GRID+=(--sampling_grid="$spec"); done
  stage sweep_sampling python tools/sweep_schedules.py --model_dir="$OUT/magnets" \
    --tokenizer_dir="$TOKENIZER" --families=sampling "${GRID[@]}" \
    --model_schedule="${SCHEDULE[magnets]}" --num_samples="$SWEEP_N" \
    --batch_size=50 --gin_bindings="make_plan.guidance_steps=4" \
    --gin_bindings="make_plan.guidance_scale=2.0" --output_dir="$OUT/sweep_sampling"
  for plan in magnets maskgit_pp; do
    # The plan's best setting as flags, e.g. --guidance_scale=4 --temperature_bias=1
    # (after the headline's --guidance_scale=2.0: the last of a flag given twice wins).
    best=$(python -c "import sys; from magnets_tf.evaluation import sweep; \
row = sweep.best_sampling(sweep.read_rows(sys.argv[1]))[sys.argv[2]]; \
print(' '.join('--' + s for s in row['sampling'].split(';')))" \
      "$OUT/sweep_sampling/sweep.csv" "${SCHEDULE[$plan]}")
    # shellcheck disable=SC2086
    stage "eval_${plan}_tuned" python tools/evaluate.py "${COMMON[@]}" --guidance_scale=2.0 $best \
      --schedule="${SCHEDULE[$plan]}" ${DECODE[$plan]} --output_dir="$OUT/eval/${plan}_tuned"
  done
fi
cat "$OUT/findings.md"
tail -n 20 "$OUT/benchmark.log"
