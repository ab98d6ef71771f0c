#!/usr/bin/env bash
# The index page and the JSON API with VIDEOS (10 000) videos in the metadata store:
# SQLite, then a one-member etcd started here. Each request is timed REQUESTS times with
# curl (median and 90th percentile): the first page of the index (24 cards), the first
# page of GET /api/videos, and a page deep in the listing (a cursor near the oldest).
# Updates the "index" section of BENCHMARKS.md.
#
#   scripts/bench/index.sh
#   VIDEOS=50000 REQUESTS=100 scripts/bench/index.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VIDEOS=${VIDEOS:-10000}
REQUESTS=${REQUESTS:-50}

bench_init index 900 curl python3 etcd
load_before="$(uptime | sed 's/.*load average: //')"

# The videos: one a minute back from a fixed time, like a library filled over a week.
# python3 writes them (rows for SQLite, key-values for etcd) as the web node would.
populate() { # sqlite DB | etcd URL
  python3 - "$VIDEOS" "$@" <<'PY'
import base64, datetime, json, sqlite3, sys, urllib.request
count, kind, target = int(sys.argv[1]), sys.argv[2], sys.argv[3]
start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
renditions = [{"width": 1280, "height": 720, "bitrate_kbps": 3000},
              {"width": 854, "height": 480, "bitrate_kbps": 1400},
              {"width": 640, "height": 360, "bitrate_kbps": 800}]
def video(n):
    at = start + datetime.timedelta(minutes=n)
    ns = int(at.timestamp()) * 1_000_000_000
    return f"video-{n:05d}", at.strftime("%Y-%m-%dT%H:%M:%S.000000000Z"), ns
if kind == "sqlite":
    db = sqlite3.connect(target)
    db.executemany(
        "INSERT INTO videos (id, uploaded_at, status, duration_seconds, source_bytes, file_count,"
        " stored_bytes, uploaded_ns, width, height, renditions, poster)"
        " VALUES (?, ?, 'ready', 60.0, 30000000, 80, 40000000, ?, 1280, 720, ?, 1)",
        [(i, t, ns, json.dumps(renditions)) for i, t, ns in map(video, range(count))])
    db.commit()
else:
    def put(key, value):
        body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                           "value": base64.b64encode(value.encode()).decode()}).encode()
        urllib.request.urlopen(urllib.request.Request(target + "/v3/kv/put", body)).read()
    for n in range(count):
        i, t, _ = video(n)
        record = {"uploaded_at": t, "status": "ready", "claim": "bench",
                  "details": {"duration_seconds": 60.0, "source_bytes": 30000000, "file_count": 80,
                              "stored_bytes": 40000000, "width": 1280, "height": 720,
                              "renditions": renditions, "poster": True}}
        put("tritontube/videos/" + i, json.dumps(record))
        put("videos/" + i, t)
PY
}

# time_path PATH : REQUESTS timings of GET PATH in ms; prints "median p90 bytes".
time_path() {
  local path=$1 i times=() size
  for ((i = 0; i < REQUESTS; i++)); do
    times+=("$(curl -sSf -o /dev/null -w '%{time_total}' "$web$path" | awk '{ printf "%.2f", $1 * 1000 }')")
  done
  size=$(curl -sSf "$web$path" | wc -c)
  printf '%s\n' "${times[@]}" | sort -g | awk -v size="$size" '{ v[NR] = $1 } END {
    printf "%s %s %s\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[int(NR * 0.9)], size }'
}

start_web() { # METADATA_TYPE METADATA_OPTIONS
  local port
  port=$(free_port)
  start_bg "web-$1" "$BIN" web --host 127.0.0.1 --port "$port" --work-dir "$WORK/web-work" \
    "$1" "$2" fs "$WORK/files"
  web_pid=$LAST_PID
  wait_port "$port"
  web="http://127.0.0.1:$port"
}

# A cursor ten videos from the oldest: the page a reader gets after paging far back.
deep="/?after=$(python3 -c 'import datetime,sys
at = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(minutes=10)
print("%d%%3Avideo-%05d" % (int(at.timestamp()) * 1_000_000_000, 10))')"

rows=()
measure() { # STORE
  local first api deep_page once
  # The first request after start: on etcd it also indexes the videos written without a
  # time key (here all of them: they were written as records of an older version).
  once=$(curl -sSf -o /dev/null -w '%{time_total}' "$web/" | awk '{ printf "%.0f", $1 * 1000 }')
  [[ $(curl -sSf "$web/" | grep -o '<li class="card"' | wc -l) == 24 ]] || {
    echo "the index of $1 does not show 24 cards" >&2
    exit 1
  }
  first=$(time_path /)
  api=$(time_path '/api/videos?limit=24')
  deep_page=$(time_path "$deep")
  rows+=("| $1 | $VIDEOS | $once | $(cut -d' ' -f1,2 <<<"$first" | sed 's/ / \/ /') | $(cut -d' ' -f3 <<<"$first") | $(cut -d' ' -f1,2 <<<"$api" | sed 's/ / \/ /') | $(cut -d' ' -f1,2 <<<"$deep_page" | sed 's/ / \/ /') |")
  log "$1: index $first, api $api, deep $deep_page"
}

# --- SQLite -----------------------------------------------------------------------------
start_web sqlite "$WORK/metadata.db" # creates the schema
stop_pid "$web_pid"
log "writing $VIDEOS videos to SQLite"
populate sqlite "$WORK/metadata.db"
start_web sqlite "$WORK/metadata.db"
measure SQLite
stop_pid "$web_pid"

# --- etcd (one member) ------------------------------------------------------------------
client=$(free_port)
peer=$(free_port)
start_bg etcd etcd --name bench --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "bench=http://127.0.0.1:$peer"
wait_port "$client"
sleep 1
log "writing $VIDEOS videos to etcd"
populate etcd "http://127.0.0.1:$client"
start_web etcd "127.0.0.1:$client"
measure "etcd (1 member)"
load_after="$(uptime | sed 's/.*load average: //')"

# --- report -----------------------------------------------------------------------------
out="$WORK/section.md"
{
  echo "## The index with $VIDEOS videos"
  echo
  echo "\`scripts/bench/index.sh\` (VIDEOS=$VIDEOS REQUESTS=$REQUESTS)"
  echo
  machine_info "before / after"
  echo "  (before: $load_before; after: $load_after)"
  echo "- setup: one web node (release, \`fs\` content) on the metadata store holding $VIDEOS ready"
  echo "  videos; curl on 127.0.0.1, one request at a time, $REQUESTS times each; milliseconds,"
  echo "  median / 90th percentile. Deep page: \`/?after=\` a cursor ten videos from the oldest."
  echo
  echo "| store | videos | first GET / after start, ms | GET / (24 cards), ms | page bytes | GET /api/videos?limit=24, ms | deep page of /, ms |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "SQLite reads one page through its index on (uploaded_ns DESC, id); etcd reads one"
  echo "page of its time index (keys under tritontube/by-time/, keys only), then those videos'"
  echo "records. The etcd videos here are written without index entries, as an older version"
  echo "wrote them: the first request after start indexes all of them once."
} >"$out"
cat "$out"
update_section index "$out"
