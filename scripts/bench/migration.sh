#!/usr/bin/env bash
# Ring change: a 4th storage node joins three that hold 1 200 DASH-like files (R = 2, so
# 2 400 copies, 1.9 GB); `tritontube admin add` is timed beside `cp -r` of the very files
# the new node received, on the same disk, in the same run (3 rounds: add, cp -r, remove).
# Also the share of the files that moved, beside the ideal 1/4. See benches/migration.rs.
# The temporary folders live under $TMPDIR (default /tmp): point it at the disk to measure.
#
#   scripts/bench/migration.sh
#   MIGRATION_VIDEOS=80 MIGRATION_ROUNDS=5 scripts/bench/migration.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init migration 900 cp sync dd
load_before="$(uptime | sed 's/.*load average: //')"
log "migration: building and running benches/migration.rs"
cargo bench --quiet --bench migration -- --bench >"$WORK/table.md"
load_after="$(uptime | sed 's/.*load average: //')"

out="$WORK/section.md"
{
  echo "## Ring change: a 4th node joins three, beside \`cp -r\`"
  echo
  echo "\`scripts/bench/migration.sh\` (runs \`cargo bench --bench migration\`)"
  echo
  machine_info "before / after"
  echo "  (before: $load_before; after: $load_after)"
  echo "- setup: 4 storage nodes and a web node (release, SQLite) on 127.0.0.1, temp folders in"
  echo "  \`${TMPDIR:-/tmp}\`; \`tritontube admin add\` timed from start to exit (inventory, journal,"
  echo "  direct copy node to node checked against the source's CRC-32C and fsynced on the new"
  echo "  node, surplus copies deleted in batches, ring switch); \`cp -r\` copies the same files (hard"
  echo "  links of what the new node received)."
  echo
  cat "$WORK/table.md"
} >"$out"
cat "$out"
update_section migration "$out"
