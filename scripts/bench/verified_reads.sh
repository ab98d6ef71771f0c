#!/usr/bin/env bash
# What verified reads cost on the cold path: the same cluster and videos, with the storage
# nodes restarted between rounds with and without checking every read against its
# recorded SHA-256 (`--unverified-reads`, a hidden flag that exists only for this), the
# web node's segment cache smaller than the working set so most requests reach a node.
# Same wrk load for both, rounds alternating. Updates the "verified_reads" section.
#
#   scripts/bench/verified_reads.sh
#   ROUNDS=5 DURATION=20 scripts/bench/verified_reads.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
CACHE_BYTES=${CACHE_BYTES:-4000000}
VIDEOS=(bench-ver-a bench-ver-b)

bench_init verified_reads 900 wrk ffmpeg curl python3
load_before="$(uptime | sed 's/.*load average: //')"
start_cluster --cache-bytes "$CACHE_BYTES"

upload_clip_as "${VIDEOS[@]}"
urls="$WORK/urls.txt"
: >"$urls"
for id in "${VIDEOS[@]}"; do
  find "$WORK"/node{1,2,3}/"$id" -maxdepth 1 -type f -name 'chunk-*' -printf "/content/$id/%f\n" | sort -u >>"$urls"
done
mbytes=$(find "$WORK"/node1 "$WORK"/node2 "$WORK"/node3 -path '*bench-ver*' -name 'chunk-*' -printf '%s\n' |
  awk '{ s += $1 } END { printf "%.0f", s / 2 / 1e6 }')
log "$(wc -l <"$urls") segment URLs, about $mbytes MB of segments"
{
  echo "local urls = {}"
  sed 's/.*/table.insert(urls, "&")/' "$urls"
  cat <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread); thread:set("id", #threads) end
function init(args) math.randomseed(os.time() + 7919 * id) end
function request() return wrk.format("GET", urls[math.random(#urls)]) end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_ms=%.2f p99_ms=%.2f errors=%d mb_s=%.1f\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status + e.connect + e.read + e.write + e.timeout,
    summary.bytes / (summary.duration / 1e6) / 1e6))
end
LUA
} >"$WORK/uniform.lua"

# restart_nodes FLAG... : the three storage nodes again, same folders and ports.
restart_nodes() {
  local i port
  for i in 0 1 2; do
    stop_pid "${node_pids[$i]}"
    port=${nodes[$i]##*:}
    start_bg "node$((i + 1))" "$BIN" storage --host 127.0.0.1 --port "$port" "$@" "$WORK/node$((i + 1))"
    node_pids[$i]=$LAST_PID
    wait_port "$port"
  done
}
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

declare -A results
for round in $(seq "$ROUNDS"); do
  order=(verified unverified)
  ((round % 2 == 0)) && order=(unverified verified)
  for mode in "${order[@]}"; do
    if [[ $mode == verified ]]; then restart_nodes; else restart_nodes --unverified-reads; fi
    wrk -t"$THREADS" -c"$CONNECTIONS" -d3s -s "$WORK/uniform.lua" "$web" >/dev/null # warm-up
    log "round $round: $mode (${DURATION}s)"
    results[$mode,$round]=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s \
      -s "$WORK/uniform.lua" "$web" | grep '^RESULT' | cut -d' ' -f2-)
    log "  ${results[$mode,$round]}"
  done
done
load_after="$(uptime | sed 's/.*load average: //')"

declare -A med
for mode in verified unverified; do
  for f in rps p50_ms p99_ms mb_s errors; do
    values=()
    for round in $(seq "$ROUNDS"); do values+=("$(field "$f" "${results[$mode,$round]}")"); done
    med[$mode,$f]=$(median "${values[@]}")
  done
done
out="$WORK/section.md"
{
  echo "## Verified reads on the cold path"
  echo
  echo "\`scripts/bench/verified_reads.sh\` (ROUNDS=$ROUNDS DURATION=$DURATION CONNECTIONS=$CONNECTIONS CACHE_BYTES=$CACHE_BYTES)"
  echo
  machine_info "before / after"
  echo "  (before: $load_before; after: $load_after)"
  echo "- setup: 3 storage nodes + 1 web node (release, R = 2), segment cache $((CACHE_BYTES / 1000000)) MB for about"
  echo "  $mbytes MB of segments (2 videos, 60 s 640x360): most requests read a node. Uniform random GETs of"
  echo "  every segment; the nodes restarted before each round with or without verification."
  echo
  echo "| round | storage nodes | req/s | MB/s | p50 ms | p99 ms | errors |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  for round in $(seq "$ROUNDS"); do
    for mode in verified unverified; do
      r=${results[$mode,$round]}
      echo "| $round | $mode | $(field rps "$r") | $(field mb_s "$r") | $(field p50_ms "$r") | $(field p99_ms "$r") | $(field errors "$r") |"
    done
  done
  for mode in verified unverified; do
    echo "| **median** | **$mode** | **${med[$mode,rps]}** | ${med[$mode,mb_s]} | **${med[$mode,p50_ms]}** | **${med[$mode,p99_ms]}** | ${med[$mode,errors]} |"
  done
  echo
  echo "Verified ÷ unverified: req/s $(ratio "${med[verified,rps]}" "${med[unverified,rps]}"), p99 $(ratio "${med[verified,p99_ms]}" "${med[unverified,p99_ms]}")."
} >"$out"
cat "$out"
update_section verified_reads "$out"
