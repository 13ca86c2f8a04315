#!/usr/bin/env bash
# Runs every test of snnc on a fresh machine: installs what the tests need,
# then runs `cargo test` over the whole workspace.
#
# Needs: a Rust toolchain (rustup, 1.95 or newer). Nothing else yet: the
# golden Norse data the conformance tests use is vendored in tests/golden/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust with rustup (https://rustup.rs), 1.95 or newer" >&2
    exit 3
fi

# CI=true makes insta fail on a missing or changed snapshot instead of
# writing a .snap.new file next to it.
export CI="${CI:-true}"
cargo test --workspace --locked "$@"
