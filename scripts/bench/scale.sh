#!/usr/bin/env bash
# The control plane at scale: for each N in SCALE_KEYS (default "20000 200000"), N keys of
# 1 KiB laid out directly on three storage nodes where the ring places them (R = 2), with
# their records in SQLite; then `admin add` / `admin remove` of a fourth node, `admin
# repair` and `repair --dry-run` on the healthy cluster, and `admin repair` after one node
# was wiped, timed, with the peak RSS of the web node and of the storage nodes. Reference:
# `cp -r` + `sync` of one node's folder on the same disk. See benches/scale.rs.
# Goals (issue 23): web peak < 128 MB at every N; files/s at the largest N ≥ 0.8 × at the
# smallest; a repair of a healthy 2 000 000-key cluster < 10 s.
#
# 2 000 000 keys take about 16 GB of disk and an hour; run them by hand, not in CI:
#
#   scripts/bench/scale.sh
#   SCALE_KEYS="20000 200000 2000000" SCALE_LIMIT_S=14400 scripts/bench/scale.sh
#
# The temporary folders live under $TMPDIR (default /tmp) and are removed at the end.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

keys="${SCALE_KEYS:-20000 200000}"
bench_init scale "${SCALE_LIMIT_S:-3600}"
load_before="$(uptime | sed 's/.*load average: //')"
log "scale: building and running benches/scale.rs for $keys keys"
SCALE_KEYS="$keys" cargo bench --quiet --bench scale -- --bench >"$WORK/table.md"
load_after="$(uptime | sed 's/.*load average: //')"

out="$WORK/section.md"
{
  echo "### Control plane at scale: a run of \`scripts/bench/scale.sh\`"
  echo
  echo "\`SCALE_KEYS=\"$keys\" scripts/bench/scale.sh\` (runs \`cargo bench --bench scale -- --bench\`)"
  echo "at commit \`$(git rev-parse --short HEAD)\`"
  echo
  machine_info "before / after"
  echo "  (before: $load_before; after: $load_after)"
  echo "- \`free -h\`:"
  echo
  echo '```'
  free -h
  echo '```'
  echo
  echo "- setup: 3 storage nodes holding N keys of 1 KiB (videos of 100 files, R = 2, default"
  echo "  virtual nodes), laid out on their disks where the ring places them, each file with"
  echo "  its integrity record, and the videos' records in SQLite; a web node (release, SQLite,"
  echo "  \`--repair-every-secs 0\`) and a 4th empty node, all on 127.0.0.1, folders in"
  echo "  \`${TMPDIR:-/tmp}\`. Times are wall clock of the \`tritontube admin …\` command, start to"
  echo "  exit. The wipe: the 3rd node stopped, its folder deleted, started again empty at its"
  echo "  address, then \`admin repair\` at once (the web node also starts a repair by itself"
  echo "  when it sees the node back; \`admin repair\` then follows that one to its end). Files"
  echo "  copied: the wiped node's file count after the repair. Peak RSS: VmHWM read just"
  echo "  before each process stops. Reference for files/s: \`cp -r\` of one node's folder"
  echo "  on the same disk, then \`sync\`."
  echo
  cat "$WORK/table.md"
} >"$out"
cat "$out"
update_section scale "$out"
