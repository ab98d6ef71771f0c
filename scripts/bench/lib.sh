# Functions shared by the benchmark scripts (sourced, not run).
#
# bench_init NAME SECONDS  builds the release binary once, makes a temp folder ($WORK),
# and arms a trap that stops every process started with start_bg and removes $WORK on
# exit, plus a watchdog that ends the script after SECONDS whatever happens.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/target/release/tritontube"
BENCH_FILE="${BENCH_FILE:-$ROOT/BENCHMARKS.md}"
PIDS=()
WORK=""
WATCHDOG=""

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

cleanup() {
  local pid
  [[ -n "$WATCHDOG" ]] && kill "$WATCHDOG" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    # Give each a few seconds to shut down gracefully, then insist.
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [[ -n "$WORK" && -d "$WORK" ]] && rm -rf "$WORK"
}

bench_init() {
  local name=$1 limit=$2
  cd "$ROOT"
  for tool in "${@:3}"; do
    command -v "$tool" >/dev/null || {
      echo "$name: $tool is missing: run scripts/setup.sh" >&2
      exit 1
    }
  done
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/tritontube-bench-$name.XXXXXX")"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  (
    # The sleep must not outlive the script (nor hold its output pipes open).
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    sleep "$limit" </dev/null >/dev/null 2>&1 &
    nap=$!
    wait "$nap"
    echo "$name: still running after $limit s, giving up" >&2
    kill -TERM $$
  ) &
  WATCHDOG=$!
  log "$name: building the release binary"
  cargo build --release --quiet --bin tritontube
}

# A TCP port nobody listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until something accepts on 127.0.0.1:PORT (at most SECONDS, default 30).
wait_port() {
  local port=$1 limit=${2:-30} i
  for ((i = 0; i < limit * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$port after $limit s" >&2
  return 1
}

# start_bg NAME CMD... : runs CMD in the background, output in $WORK/NAME.log; sets $LAST_PID.
start_bg() {
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# stop_pid PID : stops one process started with start_bg.
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# A field of /proc/PID/status in MiB (VmHWM = peak resident, VmRSS = resident now).
# start_cluster [WEB_FLAG ...] : three storage nodes and a web node (SQLite, the ring over
# the three) on free loopback ports, with any extra flags for `tritontube web`. Sets
# nodes, node_pids, web_pid and web (the base URL).
start_cluster() {
  nodes=()
  node_pids=()
  local i port admin_port web_port
  for i in 1 2 3; do
    port=$(free_port)
    mkdir -p "$WORK/node$i"
    start_bg "node$i" "$BIN" storage --host 127.0.0.1 --port "$port" "$WORK/node$i"
    node_pids+=("$LAST_PID")
    nodes+=("127.0.0.1:$port")
    wait_port "$port"
  done
  admin_port=$(free_port)
  web_port=$(free_port)
  start_bg web "$BIN" web --host 127.0.0.1 --port "$web_port" --work-dir "$WORK/web-work" \
    "$@" sqlite "$WORK/metadata.db" nw "127.0.0.1:$admin_port,$(
      IFS=,
      echo "${nodes[*]}"
    )"
  web_pid=$LAST_PID
  wait_port "$web_port"
  web="http://127.0.0.1:$web_port"
}

# upload_clip_as ID... : makes one 60 s 640x360 clip with ffmpeg and uploads it to the
# web node ($web) once under each ID; exits if an upload is refused.
upload_clip_as() {
  local id code
  log "making a 60 s 640x360 clip"
  ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 60 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -shortest "$WORK/clip.mp4"
  for id in "$@"; do
    ln "$WORK/clip.mp4" "$WORK/$id.mp4"
    log "uploading $id"
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 300 -F "file=@$WORK/$id.mp4" "$web/upload")
    [[ "$code" == 303 ]] || {
      echo "upload of $id answered $code" >&2
      exit 1
    }
  done
}

mem_mib() {
  awk -v f="$2:" '$1 == f { printf "%.0f", $2 / 1024 }' "/proc/$1/status"
}

# Median of the numbers given as arguments.
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B [DIGITS] : A / B.
ratio() {
  awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b == 0) print "n/a"; else printf "%.*f\n", d, a / b }'
}

# Whether A <= B (or >= with "ge"), as "met" / "**missed**".
verdict() {
  awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {
    ok = (op == "le") ? (a <= b) : (a >= b); print ok ? "met" : "**missed**" }'
}

# The machine and its load, as markdown list items.
machine_info() {
  local cpu
  cpu="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: \`nproc\` = $(nproc) (${cpu:-unknown CPU}), \`free -h\` total $(free -h | awk '/^Mem:/ { print $2 }'), available $(free -h | awk '/^Mem:/ { print $7 }')"
  echo "- load (\`uptime\`) $1: $(uptime | sed 's/.*load average/load average/')"
}

# update_section NAME FILE : puts FILE between the NAME markers of BENCHMARKS.md (appends
# the section if the markers are not there yet).
update_section() {
  local name=$1 body=$2 begin="<!-- BEGIN $1 -->" end="<!-- END $1 -->"
  [[ -f "$BENCH_FILE" ]] || printf '# Benchmarks\n' >"$BENCH_FILE"
  if ! grep -qF "$begin" "$BENCH_FILE"; then
    printf '\n%s\n%s\n' "$begin" "$end" >>"$BENCH_FILE"
  fi
  awk -v begin="$begin" -v end="$end" -v body="$body" '
    $0 == begin { print; while ((getline line < body) > 0) print line; skip = 1; next }
    $0 == end { skip = 0 }
    !skip { print }' "$BENCH_FILE" >"$BENCH_FILE.tmp"
  mv "$BENCH_FILE.tmp" "$BENCH_FILE"
  log "$name: section updated in $(basename "$BENCH_FILE")"
}
