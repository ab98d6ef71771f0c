#!/usr/bin/env bash
# What a ring change does to viewers: segment GET p99 through the web node (its cache off,
# so every GET reaches a storage node) while idle, while ring changes run back to back at
# full speed, and while they run paced at a quarter of the copy rate measured at full
# speed, in one run. Goal: paced p99 within 1.3 × idle. See benches/pace.rs.
# The temporary folders live under $TMPDIR (default /tmp).
#
#   scripts/bench/pace.sh
#   PACE_VIDEOS=24 PACE_VIEWERS=64 PACE_WINDOW_S=20 scripts/bench/pace.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init pace 900
load_before="$(uptime | sed 's/.*load average: //')"
log "pace: building and running benches/pace.rs"
cargo bench --quiet --bench pace -- --bench >"$WORK/table.md"
load_after="$(uptime | sed 's/.*load average: //')"

out="$WORK/section.md"
{
  echo "## Viewers during a ring change: segment p99 idle, at full speed, and paced"
  echo
  echo "\`scripts/bench/pace.sh\` (runs \`cargo bench --bench pace -- --bench\`)"
  echo
  machine_info "before / after"
  echo "  (before: $load_before; after: $load_after)"
  echo "- setup: 4 storage nodes and a web node (release, SQLite, \`--cache-bytes 0\`) on"
  echo "  127.0.0.1, temp folders in \`${TMPDIR:-/tmp}\`; viewers are tasks of one client"
  echo "  process that GET random segments through \`/content/\`; in the two change phases a"
  echo "  4th node is added and removed again (\`tritontube admin add/remove\`) over and over for"
  echo "  the whole window; the pace (\`tritontube admin pace\`) is a quarter of the median"
  echo "  copy rate of the full-speed adds (MB the new node received ÷ the time of the add)."
  echo
  cat "$WORK/table.md"
} >"$out"
cat "$out"
update_section pace "$out"
