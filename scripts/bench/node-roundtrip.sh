#!/usr/bin/env bash
# Storage node round trip: median put+get of a 1.5 MB segment over loopback (100 runs),
# the node's RSS idle and after 1 000 puts, and a reference (cp + cat, and a durable
# write + read) on the same disk. Builds in release; see benches/node_roundtrip.rs.
# The temporary folders live under $TMPDIR (default /tmp): point it at the disk to measure.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo bench --bench node_roundtrip -- --bench
