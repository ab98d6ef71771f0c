#!/usr/bin/env bash
# Every benchmark, one after the other, each updating its section of BENCHMARKS.md:
# ring lookups, segment serving beside nginx, upload to ready beside ffmpeg, and a ring
# change and a repair beside cp -r. About 8 minutes on 2 cores once the release build is done.
#
#   scripts/setup.sh && scripts/bench/all.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
started=$(date +%s)
cargo build --release --quiet --bin tritontube
for bench in ring segments verified_reads upload migration repair; do
  echo "== $bench" >&2
  # Each stops itself (a watchdog) if it hangs; the whole run is bounded as well.
  timeout --signal=TERM 900 "./$bench.sh"
done
echo "all benchmarks done in $(($(date +%s) - started)) s; see BENCHMARKS.md" >&2
