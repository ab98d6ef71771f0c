#!/usr/bin/env bash
# How fast data at risk heals: quarantine → R good copies (the resync queue) for copies a
# viewer's read found bad, and an unread rotten copy → found by the scrub → repaired, with
# a short scrub interval. See benches/heal.rs. With the default interval (24 h) a node's
# first pass comes at a random point of the first 24 h after its first start, then one
# every 24 h: an unread rotten copy waits up to 24 h (12 h on average) plus the pass.
#
#   scripts/bench/heal.sh
#   HEAL_SCRUB_INTERVAL_S=60 HEAL_READ_CASES=10 scripts/bench/heal.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init heal 900
log "heal: building and running benches/heal.rs"
cargo bench --quiet --bench heal -- --bench >"$WORK/table.md"

out="$WORK/section.md"
{
  echo "## Healing: quarantine → R good copies, and an unread rotten copy → repaired"
  echo
  echo "\`scripts/bench/heal.sh\` (runs \`cargo bench --bench heal -- --bench\`)"
  echo
  machine_info "after"
  echo "- setup: 3 storage nodes and a web node (release, SQLite) on 127.0.0.1; a copy rots"
  echo "  by bytes flipped in its file on disk; the quarantine time is the node's own; a copy"
  echo "  is healed when its node verifies it again. Reference: the default scrub interval"
  echo "  (24 h) bounds an unread rotten copy at 24 h (first pass at a random point of the first"
  echo "  interval, then every interval) plus the pass and one resync round (≤ 10 s)."
  echo
  cat "$WORK/table.md"
} >"$out"
cat "$out"
update_section heal "$out"
