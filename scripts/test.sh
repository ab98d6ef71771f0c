#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, checks formatting and
# lints, then runs every test against real storage nodes, SQLite, a five-member etcd
# cluster, ffmpeg, headless Chromium and tmux, all started by the tests on loopback;
# then the wire-compatibility check against the original's storage contract.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A setup that forgot something fails here, naming it, on any machine where it is missing.
scripts/setup.sh --check
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
# The original system's storage contract, driven by an independent Python client.
TRITONTUBE_BIN="${CARGO_TARGET_DIR:-target}/debug/tritontube" scripts/compat-check.sh
