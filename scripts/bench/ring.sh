#!/usr/bin/env bash
# Ring lookups: owners(key) per second with 10 nodes at the default V (criterion), and the
# balance that V gives (largest node share ÷ mean share).
#
#   scripts/bench/ring.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init ring 600
load_before="$(uptime | sed 's/.*load average: //')"
log "ring: running cargo bench --bench ring"
cargo bench --quiet --bench ring >"$WORK/out.txt" 2>&1 || {
  cat "$WORK/out.txt" >&2
  exit 1
}
load_after="$(uptime | sed 's/.*load average: //')"

# criterion prints, per benchmark, "time: [low unit mid unit high unit]" and "thrpt: […]";
# the bench prints the balance itself.
figure() { # BENCH_NAME time|thrpt → "low mid high unit"
  awk -v name="$1" -v what="$2:" '
    index($0, name) { found = 1 }
    found && $1 == what { gsub(/[][]/, ""); print $2, $4, $6, $3; exit }' "$WORK/out.txt"
}
per_second() { # "low mid high unit" → the middle figure in millions per second
  awk -v m="$2" -v u="$4" 'BEGIN { s = (u == "Kelem/s") ? 1e3 : (u == "Melem/s") ? 1e6 : (u == "Gelem/s") ? 1e9 : 1
    printf "%.2f", m * s / 1e6 }'
}
read -r low mid high unit < <(figure owners_10_nodes_default_v thrpt)
read -r tlow tmid thigh tunit < <(figure owners_10_nodes_default_v time)
read -r rlow rmid rhigh runit < <(figure sha256_of_key_reference thrpt)
imbalance=$(sed -n 's/.*largest share \/ mean share = //p' "$WORK/out.txt")
per_s=$(per_second "$low" "$mid" "$high" "$unit")
ref_s=$(per_second "$rlow" "$rmid" "$rhigh" "$runit")
ns=$(awk -v p="$per_s" 'BEGIN { printf "%.0f", 1e3 / p }')
ref_ns=$(awk -v p="$ref_s" 'BEGIN { printf "%.0f", 1e3 / p }')
v=$(sed -n 's/^pub const DEFAULT_VIRTUAL_NODES: u32 = \([0-9]*\);/\1/p' src/ring.rs)
r=$(sed -n 's/^pub const DEFAULT_REPLICAS: u32 = \([0-9]*\);/\1/p' src/ring.rs)

out="$WORK/section.md"
{
  echo "## Ring lookups and balance"
  echo
  echo "\`scripts/bench/ring.sh\` (runs \`cargo bench --bench ring\`, criterion)"
  echo
  machine_info "before / after"
  echo "  (before: $load_before; after: $load_after)"
  echo "- 10 nodes \`127.0.0.1:8090…8099\`, V = $v, R = $r; each lookup hashes the key (SHA-256) and"
  echo "  walks the token list to $r distinct nodes; 1 024 keys per iteration."
  echo
  echo "| figure | Tritontube | reference | ratio | |"
  echo "|---|---:|---:|---:|---|"
  echo "| lookups/s, \`owners(key)\` (reference: SHA-256 of the key alone) | $per_s M/s, $ns ns each ($low–$high $unit) | $ref_s M/s, $ref_ns ns each | $(ratio "$per_s" "$ref_s") | |"
  echo "| time per 1 024 lookups | $tmid $tunit ($tlow–$thigh $tunit) | | | |"
  echo "| largest share ÷ mean share, 10 nodes | $imbalance | README bound 1.10 | $(ratio "$imbalance" 1.10) | $(verdict "$imbalance" le 1.10) |"
  echo "| (DESIGN.md table, 10 nodes, V = 256) | | 1.09 | | |"
} >"$out"
cat "$out"
update_section ring "$out"
