#!/usr/bin/env bash
# Metadata store latency and failover figures: SQLite and a five-member etcd cluster that
# the benchmark starts itself on 127.0.0.1 (free ports, temporary folders).
#
#   scripts/bench/meta.sh                    # 1000 timed operations, 10 000 listed videos
#   META_BENCH_OPS=200 scripts/bench/meta.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
command -v etcd >/dev/null || echo "note: etcd is not on PATH; only SQLite will be measured" >&2
exec cargo bench --bench meta -- "$@"
