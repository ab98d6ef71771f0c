#!/usr/bin/env bash
# How long the first frame takes to appear after a player page opens, in headless
# Chromium (tests/browser/first-frame.mjs): with nothing cached, with a cold browser cache
# (fresh profile; the web node's segment cache warm), and with a warm browser cache
# (the versioned content URLs are immutable, so they come from it). A 30 s 1280x720 clip,
# uploaded once to three storage nodes. Updates the "first-frame" section of BENCHMARKS.md.
#
#   scripts/bench/first-frame.sh
#   RUNS=9 scripts/bench/first-frame.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-5}
bench_init first-frame 900 ffmpeg curl node
[[ -d "$ROOT/tests/browser/node_modules/playwright-core" ]] || {
  echo "first-frame: run scripts/setup.sh first (npm packages of tests/browser)" >&2
  exit 1
}
load_before="$(uptime | sed 's/.*load average: //')"
start_cluster
ffmpeg -hide_banner -loglevel error -nostdin -y \
  -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 30 -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -shortest "$WORK/frames.mp4"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 600 -F "file=@$WORK/frames.mp4" "$web/upload")
[[ $code == 303 ]] || {
  echo "the upload answered $code" >&2
  exit 1
}
report=$(node "$ROOT/tests/browser/first-frame.mjs" "$web/videos/frames" "$RUNS")
log "$report"
load_after="$(uptime | sed 's/.*load average: //')"
field() { python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, r))' "$report" "$1"; }

out="$WORK/section.md"
{
  echo "## First frame after the player page opens"
  echo
  echo "\`scripts/bench/first-frame.sh\` (RUNS=$RUNS)"
  echo
  machine_info "before / after"
  echo "  (before: $load_before; after: $load_after)"
  echo "- setup: 3 storage nodes + 1 web node (release, R = 2) on 127.0.0.1; a 30 s 1280x720"
  echo "  clip (ladder 720p/480p/360p); headless Chromium (\`--disable-gpu\`), muted autoplay."
  echo "  Time = the page's \`performance.now()\` at the first presented frame"
  echo "  (\`requestVideoFrameCallback\`), i.e. from navigation start. Median of RUNS."
  echo
  echo "| case | first frame, ms | requests from the browser cache / from the network |"
  echo "|---|---:|---|"
  echo "| nothing cached (first view after the upload) | $(field 'first["ms"]') | $(field 'first["cached"]') / $(field 'first["network"]') |"
  echo "| cold browser cache (fresh profile), web node cache warm | $(field 'coldMedian') | $(field 'cold[0]["cached"]') / $(field 'cold[0]["network"]') |"
  echo "| warm browser cache (same profile, page opened again) | $(field 'warmMedian') | $(field 'warm[0]["cached"]') / $(field 'warm[0]["network"]') |"
} >"$out"
cat "$out"
update_section first-frame "$out"
