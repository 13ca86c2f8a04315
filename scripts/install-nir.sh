#!/usr/bin/env bash
# Installs NIR's Python package, nir==1.0.8 from PyPI (with its
# dependencies numpy and h5py), into $NIR_HOME (default
# ~/.cache/snnc/nir-1.0.8), and prints that directory on stdout: the
# directory to put on PYTHONPATH. Idempotent: a second run installs nothing.
#
# The NIR export test (tests/nir_export.rs) checks that every file
# `snnc export` writes passes NIR's own reader, `nir.read` (which type-checks
# the graph), with the package found through $SNNC_NIR_PYTHONPATH, else at
# the directory this script prints:
#
#     SNNC_NIR_PYTHONPATH="$(scripts/install-nir.sh)" cargo test --test nir_export
#
# Needs python3 (3.10 or newer) with pip and access to PyPI (about 30 MB).
set -euo pipefail

VERSION=1.0.8
NIR_HOME="${NIR_HOME:-$HOME/.cache/snnc/nir-$VERSION}"

check() {
    PYTHONPATH="$NIR_HOME" python3 -c "import nir, sys; sys.exit(0 if nir.version == '$VERSION' else 1)" >/dev/null 2>&1
}

if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 not found; it is needed to install nir from PyPI" >&2
    exit 3
fi
if ! check; then
    echo "installing nir $VERSION (with numpy and h5py) into $NIR_HOME" >&2
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        --target "$NIR_HOME" "nir==$VERSION" >&2
fi
if ! check; then
    echo "error: nir $VERSION was installed into $NIR_HOME but does not import" >&2
    exit 1
fi
echo "$NIR_HOME"
