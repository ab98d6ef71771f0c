#!/usr/bin/env bash
# Repair: a wiped storage node (a replaced disk) refilled by `tritontube admin repair`,
# timed beside `cp -r` and `cp -r` + `sync` of the very files it lost, on the same disk,
# in the same run. See benches/repair.rs. Temporary folders live under $TMPDIR.
#
#   scripts/bench/repair.sh
#   REPAIR_VIDEOS=60 REPAIR_ROUNDS=5 scripts/bench/repair.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init repair 900 cp sync
load_before="$(uptime | sed 's/.*load average: //')"
log "repair: building and running benches/repair.rs"
cargo bench --quiet --bench repair -- --bench >"$WORK/table.md"
load_after="$(uptime | sed 's/.*load average: //')"

out="$WORK/section.md"
{
  echo "## Repair: a wiped node refilled, beside \`cp -r\`"
  echo
  echo "\`scripts/bench/repair.sh\` (runs \`cargo bench --bench repair\`)"
  echo
  machine_info "before / after"
  echo "  (before: $load_before; after: $load_after)"
  echo "- setup: 3 storage nodes and a web node (release, SQLite, R = 2) on 127.0.0.1; the third"
  echo "  node is stopped, its folder emptied, and started again at its address; \`tritontube admin"
  echo "  repair\` is timed from start to exit (plan, survey of every node, copies pulled node to node"
  echo "  checked against the source's CRC-32C, and fsync); \`cp -r\` copies the same files (hard"
  echo "  links kept aside)."
  echo
  cat "$WORK/table.md"
} >"$out"
cat "$out"
update_section repair "$out"
