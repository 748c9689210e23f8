#!/usr/bin/env bash
# Browser check of TensorBoard monitoring: trains tiny runs (or takes a directory of runs),
# serves them with TensorBoard, asserts through its HTTP data API that every scalar, image
# and text tag is served with points and that the hparams table has its sessions and
# metric columns, and takes headless Chromium screenshots of the Time Series, Images,
# Text and HParams tabs (scripts/check_tensorboard.py does the checks).
#
#   bash scripts/check_tensorboard.sh                      # tiny runs in a temp dir
#   bash scripts/check_tensorboard.sh runs/quickstart_smoke  # runs already there
#   make check-tensorboard
#
# Env: OUT (where the tiny runs and screenshots go; default a new temp dir), SHOTS
# (screenshot dir; default $OUT/screenshots or <logdir>/screenshots), STEPS (training
# steps of the tiny runs, 30), GIN_FILE (transformer config, gin/fashion_mnist/magnets_tiny.gin;
# gin/fashion_mnist/magnets_small.gin for the 6x128 model), TOKENIZER_STEPS (12),
# TRAIN_BINDINGS (extra gin bindings of both transformer runs, space-separated, e.g.
# "make_optimizer.warmup_steps=20" so a short run's curves move), TIMESERIES_FILTER (tag
# regex of the Time Series screenshot, e.g. "loss|accuracy"; default all tags), PYTHON. Needs Debian's `chromium`: installed here with apt-get when missing and run as
# root (otherwise: apt-get install chromium). Exit 0: every check passed; 1: a check
# failed (its FAIL line says which); 2: no chromium or a bad argument.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-30}
TOKENIZER_STEPS=${TOKENIZER_STEPS:-12}
GIN_FILE=${GIN_FILE:-gin/fashion_mnist/magnets_tiny.gin}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "[chromium] installing Debian chromium (apt-get)"
    { apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium \
             fonts-dejavu-core >/dev/null; }; } \
      || { echo "error: could not install chromium with apt-get" >&2; exit 2; }
  else
    echo "error: chromium not found; install it: apt-get install chromium" >&2; exit 2
  fi
fi

if [ $# -ge 1 ]; then
  LOGDIR=$1
  [ -d "$LOGDIR" ] || { echo "error: $LOGDIR is not a directory" >&2; exit 2; }
  SHOTS=${SHOTS:-$LOGDIR/screenshots}
else
  OUT=${OUT:-$(mktemp -d /tmp/check_tensorboard.XXXXXX)}
  LOGDIR=$OUT/runs
  SHOTS=${SHOTS:-$OUT/screenshots}
  mkdir -p "$LOGDIR"
  run() {  # run NAME COMMAND...: logs to $OUT/NAME.log, shows its tail on failure
    echo "[$1] ${*:2}"
    "${@:2}" > "$OUT/$1.log" 2>&1 || { tail -20 "$OUT/$1.log" >&2; exit 1; }
  }
  # Real Fashion-MNIST tokens of the committed tokenizer, so samples are images.
  run tokens "$PYTHON" tools/tokenize_dataset.py \
    --tokenizer_dir=checkpoints/fashion_mnist/tokenizer --dataset=fashion_mnist \
    --output_dir="$OUT/tokens" --max_examples=512 --overwrite
  every=$(( STEPS / 3 > 0 ? STEPS / 3 : 1 ))
  for name in magnets maskgit; do
    extra=()
    for binding in ${TRAIN_BINDINGS:-}; do extra+=(--gin_bindings="$binding"); done
    [ "$name" = maskgit ] && extra+=(--gin_bindings="build_transformer.factors=(1,)")
    run "train_$name" "$PYTHON" tools/train.py --gin_file="$GIN_FILE" \
      --model_dir="$LOGDIR/$name" --train_steps="$STEPS" --progress=false \
      --gin_bindings="TOKENS_DIR='$OUT/tokens/train'" \
      --gin_bindings="EVAL_TOKENS_DIR='$OUT/tokens/test'" \
      --gin_bindings="train.batch_size=32" --gin_bindings="train.log_every=$every" \
      --gin_bindings="train.eval_every=$every" --gin_bindings="train.eval_batches=2" \
      --gin_bindings="train.sample_every=$STEPS" --gin_bindings="train.num_samples=10" \
      --gin_bindings="train.checkpoint_every=$STEPS" "${extra[@]}"
  done
  run train_tokenizer "$PYTHON" tools/train_tokenizer.py \
    --gin_file=gin/fashion_mnist/tokenizer.gin --model_dir="$LOGDIR/tokenizer" \
    --progress=false --gin_bindings="TokenizerTrainer.num_steps=$TOKENIZER_STEPS" \
    --gin_bindings="TokenizerTrainer.log_every=$(( TOKENIZER_STEPS / 3 > 0 ? TOKENIZER_STEPS / 3 : 1 ))" \
    --gin_bindings="TokenizerTrainer.image_every=$TOKENIZER_STEPS" \
    --gin_bindings="train_tokenizer_experiment.eval_batch_size=100" \
    --gin_bindings="train_tokenizer_experiment.eval_max_batches=1"
fi

echo "[check] TensorBoard on $LOGDIR; screenshots in $SHOTS"
exec "$PYTHON" scripts/check_tensorboard.py --logdir="$LOGDIR" --screenshot_dir="$SHOTS" \
  --timeseries_filter="${TIMESERIES_FILTER:-}"
