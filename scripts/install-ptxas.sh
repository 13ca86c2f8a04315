#!/usr/bin/env bash
# Installs ptxas (the PTX assembler of CUDA 12.9) without CUDA and without a
# GPU, from the PyPI wheel nvidia-cuda-nvcc-cu12==12.9.86, into
# $PTXAS_HOME (default ~/.cache/snnc/ptxas-12.9.86), and prints the path of
# the ptxas binary on stdout. Idempotent: a second run installs nothing.
#
# The PTX test (tests/ptx.rs) finds ptxas through $SNNC_PTXAS, else at the
# path this script prints:
#
#     SNNC_PTXAS="$(scripts/install-ptxas.sh)" cargo test --test ptx
#
# Needs python3 with pip and access to PyPI (about 40 MB, 2 s).
set -euo pipefail

VERSION=12.9.86
PTXAS_HOME="${PTXAS_HOME:-$HOME/.cache/snnc/ptxas-$VERSION}"
PTXAS="$PTXAS_HOME/nvidia/cuda_nvcc/bin/ptxas"

if [ ! -x "$PTXAS" ]; then
    if ! command -v python3 >/dev/null 2>&1; then
        echo "error: python3 not found; it is needed to install ptxas from PyPI" >&2
        exit 3
    fi
    echo "installing ptxas $VERSION into $PTXAS_HOME" >&2
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
        --target "$PTXAS_HOME" "nvidia-cuda-nvcc-cu12==$VERSION" >&2
fi
if [ ! -x "$PTXAS" ]; then
    echo "error: the wheel was installed but $PTXAS is missing or not executable" >&2
    exit 1
fi
"$PTXAS" --version >/dev/null
echo "$PTXAS"
