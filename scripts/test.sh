#!/usr/bin/env bash
# Runs every test of snnc on a fresh machine: installs what the tests need,
# then runs `cargo test` over the whole workspace (`--no-fail-fast`: a
# failing test binary does not stop the others, so one run shows every
# failure).
#
# Installs (each step is skipped when already done):
# - Debian's `dataset-fashion-mnist` (the training tests read it from
#   /usr/share/datasets/fashion-mnist), with apt-get (as root, or via sudo);
# - ptxas 12.9 from the PyPI wheel nvidia-cuda-nvcc-cu12 (scripts/install-ptxas.sh),
#   which assembles the generated PTX on the CPU: no GPU or CUDA needed;
# - NIR's Python package nir==1.0.8 (with numpy, h5py) from PyPI
#   (scripts/install-nir.sh), whose reader checks the files `snnc export` writes.
# The golden Norse data of the conformance tests is vendored in tests/golden/.
#
# Needs: a Rust toolchain (rustup, 1.95 or newer), apt-get, python3 with pip.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust with rustup (https://rustup.rs), 1.95 or newer" >&2
    exit 3
fi

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/t10k-labels-idx1-ubyte.gz" ]; then
    echo "installing dataset-fashion-mnist (apt-get)" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

SNNC_PTXAS="$(scripts/install-ptxas.sh)"
export SNNC_PTXAS
SNNC_NIR_PYTHONPATH="$(scripts/install-nir.sh)"
export SNNC_NIR_PYTHONPATH

# CI=true makes insta fail on a missing or changed snapshot instead of
# writing a .snap.new file next to it, and makes the data set, ptxas
# and NIR tests fail instead of skipping when what they need is missing.
export CI="${CI:-true}"
cargo test --workspace --locked --no-fail-fast "$@"
