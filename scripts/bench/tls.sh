#!/usr/bin/env bash
# What mutual TLS on the internal links costs: one cluster with `--certs-dir` beside the
# same cluster without, in one run. (a) The cold segment path: viewers' GETs of segments
# the web node's cache does not hold, so each is a web→storage read (req/s, MB/s, p50,
# p99). (b) A ring change: `tritontube admin add` of a node that receives files from the
# others by direct copy (files/s, MB/s). The goal is at most 10 % cost on each. See
# benches/tls.rs. Temporary folders live under $TMPDIR.
#
#   scripts/bench/tls.sh
#   TLS_VIDEOS=24 TLS_ROUNDS=5 TLS_SECONDS=15 scripts/bench/tls.sh
#   TLS_PROFILE=/tmp/tls.perf scripts/bench/tls.sh   # perf record -a -g of the TLS
#                                                   # cluster's first cold round
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init tls 900
load_before="$(uptime | sed 's/.*load average: //')"
log "tls: building and running benches/tls.rs"
cargo bench --quiet --bench tls -- --bench >"$WORK/table.md"
log "tls: where the CPU goes (benches/tls_records.rs)"
cargo bench --quiet --bench tls_records -- --bench >"$WORK/records.md"
load_after="$(uptime | sed 's/.*load average: //')"

out="$WORK/section.md"
{
  echo "## The cost of TLS on the internal links: cold segments and a ring change"
  echo
  echo "\`scripts/bench/tls.sh\` (runs \`cargo bench --bench tls\`; TLS_VIDEOS=${TLS_VIDEOS:-16} TLS_ROUNDS=${TLS_ROUNDS:-3} TLS_SECONDS=${TLS_SECONDS:-10} TLS_CONNECTIONS=${TLS_CONNECTIONS:-16})"
  echo
  machine_info "before / after"
  echo "  (before: $load_before; after: $load_after)"
  echo "- setup: two clusters alike but for \`--certs-dir\` (certificates from \`tritontube cert\`),"
  echo "  each 2 storage nodes + a web node (release, SQLite) on 127.0.0.1 and a spare node. Cold"
  echo "  path: concurrent viewers GET random segments through the web node, whose segment cache"
  echo "  is one byte (\`--cache-bytes 1\`), so each GET reads a storage node (GetFile, mutual TLS or"
  echo "  plain). Ring change: \`tritontube admin add\` of the spare node timed from start to exit"
  echo "  (direct copies node to node, inside mutual TLS or plain with sendfile), then"
  echo "  \`admin remove\` so the next round starts alike. Rounds alternate which cluster goes first."
  echo
  cat "$WORK/table.md"
  echo
  echo "Where the CPU goes, outside the cluster (\`cargo bench --bench tls_records -- --bench\`, CPU time):"
  echo
  cat "$WORK/records.md"
} >"$out"
cat "$out"
update_section tls "$out"
