#!/usr/bin/env bash
# Every benchmark, one after the other, each updating its section of BENCHMARKS.md:
# ring lookups, segment serving beside nginx (with the cache holding the videos, then
# smaller than them), verified against unverified reads, upload to ready beside ffmpeg,
# playable and ready after an upload (publish first),
# and a ring change and a repair beside cp -r (+ sync). About 12 minutes on 2 cores once
# the release build is done.
#
#   scripts/setup.sh && scripts/bench/all.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
started=$(date +%s)
cargo build --release --quiet --bin tritontube
for bench in ring segments segments-cold verified_reads upload publish migration repair; do
  echo "== $bench" >&2
  # Each stops itself (a watchdog) if it hangs; the whole run is bounded as well.
  case $bench in
  # The same load with a 16 MB cache for the 67 MB of videos: most misses reach a node.
  segments-cold) CACHE_BYTES=16000000 SECTION=segments-cold timeout --signal=TERM 900 ./segments.sh ;;
  *) timeout --signal=TERM 900 "./$bench.sh" ;;
  esac
done
echo "all benchmarks done in $(($(date +%s) - started)) s; see BENCHMARKS.md" >&2
