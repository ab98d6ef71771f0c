#!/usr/bin/env bash
# Publish first: a 60 s 1280x720 clip is sent as the page's script sends it (202 once
# the body is in), then the video's state is polled: the time from the end of the upload
# to `playable` (the lowest rendition stored, the manifest listing it) and to `ready`
# (the whole ladder), in the same run; beside ffmpeg alone encoding the same ladder
# (720p, 480p, 360p + AAC) in one run to a local folder. Rounds alternate which goes
# first. Then the storyboard's extra encode cost: ffmpeg's first run (360p + AAC, as the
# web node runs it) with and without the storyboard branch. Updates the "publish"
# section of BENCHMARKS.md.
#
#   scripts/bench/publish.sh
#   ROUNDS=3 scripts/bench/publish.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-1}

bench_init publish 1200 ffmpeg curl python3
load_before="$(uptime | sed 's/.*load average: //')"
start_cluster

log "making a 60 s 1280x720 clip"
ffmpeg -hide_banner -loglevel error -nostdin -y \
  -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 60 -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -shortest "$WORK/clip.mp4"
clip_mb=$(du -m "$WORK/clip.mp4" | cut -f1)

# The whole ladder in one ffmpeg run: one decode, split, one scale per rendition.
reference() { # OUT_DIR
  mkdir -p "$1"
  (cd "$1" && ffmpeg -hide_banner -nostdin -loglevel error -y -i "$WORK/clip.mp4" \
    -filter_complex '[0:v:0]split=3[s0][s1][s2];[s0]scale=1280:720[v0];[s1]scale=854:480[v1];[s2]scale=640:360[v2]' \
    -map '[v0]' -map '[v1]' -map '[v2]' -map 0:a:0 -c:a aac -b:a 128k \
    -c:v libx264 -b:v:0 3000k -b:v:1 1400k -b:v:2 800k \
    -bf 1 -keyint_min 120 -g 120 -sc_threshold 0 \
    -f dash -adaptation_sets 'id=0,streams=v id=1,streams=a' -use_timeline 1 -use_template 1 \
    -init_seg_name 'init-$RepresentationID$.m4s' \
    -media_seg_name 'chunk-$RepresentationID$-$Number%05d$.m4s' \
    -seg_duration 4 "$1/manifest.mpd")
}
# The web node's first run (src/web/publish.rs): 360p + AAC, optionally with the
# storyboard branch (fps=1/2, 160x90 tiles, 5x5 sheets) from the same decode.
first_run() { # OUT_DIR with|without
  local graph='[0:v:0]split=1[s0];[s0]scale=640:360[v0]' extra=()
  if [[ $2 == with ]]; then
    graph='[0:v:0]split=2[s0][s1];[s0]scale=640:360[v0];[s1]fps=1/2,scale=160:90,tile=5x5[sb]'
    extra=(-map '[sb]' -c:v mjpeg -q:v 5 -f image2 "$1/storyboard-%03d.jpg")
  fi
  mkdir -p "$1"
  (cd "$1" && ffmpeg -hide_banner -nostdin -loglevel error -y -i "$WORK/clip.mp4" \
    -filter_complex "$graph" -map '[v0]' -map 0:a:0 -c:a aac -b:a 128k \
    -c:v libx264 -b:v:0 800k -bf 1 -keyint_min 120 -g 120 -sc_threshold 0 \
    -f dash -adaptation_sets 'id=0,streams=v id=1,streams=a' -use_timeline 1 -use_template 1 \
    -init_seg_name 'init-$RepresentationID$.m4s' \
    -media_seg_name 'chunk-$RepresentationID$-$Number%05d$.m4s' \
    -seg_duration 4 "$1/manifest.mpd" "${extra[@]}")
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

declare -a playable ready ref
for round in $(seq "$ROUNDS"); do
  order=(tritontube ffmpeg)
  ((round % 2 == 0)) && order=(ffmpeg tritontube)
  for what in "${order[@]}"; do
    if [[ $what == tritontube ]]; then
      id="bench-publish-$round"
      ln -f "$WORK/clip.mp4" "$WORK/$id.mp4"
      code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 600 \
        -H 'Accept: application/json' -F "file=@$WORK/$id.mp4" "$web/upload")
      sent=$(now)
      [[ $code == 202 ]] || {
        echo "upload $round answered $code" >&2
        exit 1
      }
      playable_at=""
      while :; do
        state=$(curl -sS "$web/api/videos/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
        [[ $state == playable && -z $playable_at ]] && playable_at=$(now)
        [[ $state == ready ]] && break
        [[ $state == processing || $state == playable ]] || {
          echo "upload $round went $state" >&2
          exit 1
        }
        sleep 0.1
      done
      ready_at=$(now)
      # A state passed between two looks counts as reached at the later one.
      playable[round]=$(since "$sent" "${playable_at:-$ready_at}")
      ready[round]=$(since "$sent" "$ready_at")
    else
      start=$(now)
      reference "$WORK/ref-$round"
      ref[round]=$(since "$start" "$(now)")
      rm -rf "$WORK/ref-$round"
    fi
    log "round $round: $what done"
  done
  log "round $round: playable ${playable[round]} s, ready ${ready[round]} s, ffmpeg alone ${ref[round]} s"
done
declare -a with_sb without_sb
for round in $(seq "$ROUNDS"); do
  for what in without with; do
    start=$(now)
    first_run "$WORK/first-$what" "$what"
    took=$(since "$start" "$(now)")
    if [[ $what == with ]]; then with_sb[round]=$took; else without_sb[round]=$took; fi
    rm -rf "$WORK/first-$what"
  done
  log "round $round: first run without storyboard ${without_sb[round]} s, with ${with_sb[round]} s"
done
load_after="$(uptime | sed 's/.*load average: //')"
p_med=$(median "${playable[@]}")
r_med=$(median "${ready[@]}")
ref_med=$(median "${ref[@]}")
share=$(ratio "$p_med" "$r_med" 3)
sb_with=$(median "${with_sb[@]}")
sb_without=$(median "${without_sb[@]}")

out="$WORK/section.md"
{
  echo "## Publish first: playable and ready after the upload, beside ffmpeg alone"
  echo
  echo "\`scripts/bench/publish.sh\` (ROUNDS=$ROUNDS)"
  echo
  machine_info "before / after"
  echo "  (before: $load_before; after: $load_after)"
  echo "- setup: 3 storage nodes + 1 web node (release, R = 2) on 127.0.0.1. A 60 s 1280x720"
  echo "  25 fps clip with AAC audio ($clip_mb MB), sent with \`Accept: application/json\` (202"
  echo "  once the body is in); then \`/api/videos/{id}\` polled every 0.1 s. Playable: the 360p"
  echo "  rendition and the audio encoded, stored and listed; ready: 720p and 480p added. The"
  echo "  reference is ffmpeg alone encoding the same ladder in one run into a local folder."
  echo
  echo "| round | end of upload → playable, s | end of upload → ready, s | ffmpeg alone (whole ladder), s | playable ÷ ready |"
  echo "|---|---:|---:|---:|---:|"
  for round in $(seq "$ROUNDS"); do
    echo "| $round | ${playable[round]} | ${ready[round]} | ${ref[round]} | $(ratio "${playable[round]}" "${ready[round]}" 3) |"
  done
  echo "| **median** | **$p_med** | **$r_med** | **$ref_med** | **$share** |"
  echo
  echo "| target | measured | |"
  echo "|---|---:|---|"
  echo "| playable ≤ 0.35 × ready | $share | $(verdict "$share" le 0.35) |"
  echo "| ready ÷ ffmpeg alone | $(ratio "$r_med" "$ref_med" 3) | |"
  echo "| playable ÷ ffmpeg alone | $(ratio "$p_med" "$ref_med" 3) | |"
  echo
  echo "Storyboard's extra encode cost: the first run (360p + AAC DASH) alone, then with the"
  echo "storyboard branch from the same decode (a tile per 2 s, 160x90, 5x5 JPEG sheets):"
  echo
  echo "| first run without storyboard, s | with storyboard, s | extra |"
  echo "|---:|---:|---:|"
  echo "| $sb_without | $sb_with | $(awk -v a="$sb_with" -v b="$sb_without" 'BEGIN { printf "%+.1f %%", (a / b - 1) * 100 }') |"
} >"$out"
cat "$out"
update_section publish "$out"
