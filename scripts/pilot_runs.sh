#!/usr/bin/env bash
# Architecture pilots for the stronger reference model (issue #26): which width and depth
# to spend a fixed training wall-time budget on.
#
#   MINUTES=25 nohup bash scripts/pilot_runs.sh runs/pilots > runs/pilots.log 2>&1 &
#
# Pilots are shapes LxW (6x128, 8x192, 6x256: heads and MLP width from the throughput
# report) or LxW-nodropout (that shape with dropout and attention dropout 0, given the
# shape's step count: a conservative budget, since a step without dropout is cheaper).
# Every pilot gets the same training wall time on this 2-core machine (MINUTES, at the
# idle steps/s that tools/benchmark_training.py measured for its shape at batch 64,
# results/benchmarks/pilot_throughput_*.json), so pilots may share the machine with
# other work without changing the comparison: each trains a fixed step count, its own
# full warm-up + cosine schedule (warm-up an eighth of the steps). Each then gets the
# held-out cross-entropy of every sub-model on the test tokens and FID / class accuracy
# of MaskGIT++ (1:12, no cache) and MaGNeTS (8:3,4:3,2:3,1:3, cache) at n = N with
# guidance 2 on the last 4 steps. Summary: OUT/pilots.md and OUT/pilots.json.
# Resumable: finished stages are skipped (OUT/stages).
set -euo pipefail
OUT=${1:-runs/pilots}
MINUTES=${MINUTES:-25}
N=${N:-500}
BATCH=${BATCH:-64}
PILOTS=${PILOTS:-6x128 8x192 6x256}
TOKENIZER=${TOKENIZER:-checkpoints/fashion_mnist/tokenizer}
CLASSIFIER=${CLASSIFIER:-checkpoints/fashion_mnist/classifier}
export TF_CPP_MIN_LOG_LEVEL=2
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT/stages"

stage() {  # stage NAME COMMAND...: runs COMMAND once, appending to OUT/NAME.log
  local name=$1; shift
  if [[ -e "$OUT/stages/$name.done" ]]; then echo "[$name] done before"; return; fi
  echo "[$name] $*"
  echo "== $(date -u +%FT%TZ) $*" >> "$OUT/$name.log"
  "$@" >> "$OUT/$name.log" 2>&1
  touch "$OUT/stages/$name.done"
}

shape() {  # shape NAME: "layers width heads mlp steps_per_second" of a pilot
  python - "$1" <<'EOF'
import json, sys
name = sys.argv[1].split("-")[0]  # 6x128-nodropout: the 6x128 shape without dropout
path = f"results/benchmarks/pilot_throughput_{name}.json"
try:
    layers, width = (int(v) for v in name.split("x"))
    report = json.load(open(path))
except (ValueError, OSError) as error:
    sys.exit(f"pilot {sys.argv[1]!r}: needs a shape LxW with a throughput report {path} "
             f"(tools/benchmark_training.py --output={path}): {error}")
bindings = dict(b.split("=", 1) for b in report["gin_bindings"])
if (int(bindings["build_transformer.num_layers"]), int(bindings["build_transformer.hidden_size"])) != (layers, width):
    sys.exit(f"{path} reports another shape than {name}")
print(layers, width, bindings["build_transformer.num_heads"],
      bindings["build_transformer.mlp_dim"], report["steps_per_second"]["1"]["median"])
EOF
}

declare -A FACTS  # pilot -> "layers width heads mlp steps_per_second", checked before any work
for pilot in $PILOTS; do
  case "$pilot" in
    *-nodropout | [0-9]*x[0-9]*[0-9]) ;;
    *) echo "unknown pilot $pilot (known: LxW, LxW-nodropout)" >&2; exit 2 ;;
  esac
  FACTS[$pilot]=$(shape "$pilot")  # a command substitution, so that its failure stops the script
done

stage tokens python tools/tokenize_dataset.py --tokenizer_dir="$TOKENIZER" \
  --dataset=fashion_mnist --splits=train,test --output_dir="$OUT/tokens" --overwrite

for pilot in $PILOTS; do
  read -r layers width heads mlp rate <<< "${FACTS[$pilot]}"
  variant=()
  case "$pilot" in
    *-nodropout) variant=(--gin_bindings="build_transformer.dropout=0.0"
                          --gin_bindings="build_transformer.attention_dropout=0.0") ;;
  esac
  steps=$(python -c "print(round($rate * 60 * $MINUTES))")
  warmup=$(( steps / 8 ))
  stage "train_$pilot" python tools/train.py --gin_file=gin/fashion_mnist/magnets_small.gin \
    --model_dir="$OUT/$pilot" --train_steps="$steps" --progress=false \
    --gin_bindings="TOKENS_DIR='$OUT/tokens/train'" \
    --gin_bindings="EVAL_TOKENS_DIR='$OUT/tokens/test'" \
    --gin_bindings="build_transformer.num_layers=$layers" \
    --gin_bindings="build_transformer.hidden_size=$width" \
    --gin_bindings="build_transformer.num_heads=$heads" \
    --gin_bindings="build_transformer.mlp_dim=$mlp" \
    --gin_bindings="make_optimizer.warmup_steps=$warmup" \
    --gin_bindings="train.batch_size=$BATCH" --gin_bindings="train.eval_every=$steps" \
    --gin_bindings="train.eval_batches=16" --gin_bindings="train.checkpoint_every=$steps" \
    --gin_bindings="train.sample_every=0" "${variant[@]}"
  common=(--model_dir="$OUT/$pilot" --tokenizer_dir="$TOKENIZER" --reference=fashion_mnist:test
          --steps=12 --cfg_last=4 --guidance_scale=2.0 --batch_size=50 --num_samples="$N"
          --classifier_dir="$CLASSIFIER")
  stage "eval_${pilot}_maskgit_pp" python tools/evaluate.py "${common[@]}" --schedule=1:12 \
    --cache=false --output_dir="$OUT/eval/${pilot}_maskgit_pp"
  stage "eval_${pilot}_magnets" python tools/evaluate.py "${common[@]}" \
    --schedule=8:3,4:3,2:3,1:3 --cache=true --refresh=model_change \
    --output_dir="$OUT/eval/${pilot}_magnets"
done

python scripts/pilot_summary.py --pilots_dir="$OUT" --minutes="$MINUTES" $PILOTS
