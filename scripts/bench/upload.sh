#!/usr/bin/env bash
# Upload to ready: POST /upload of a 60 s 1280x720 clip until the 303 (stream to disk,
# probe, transcode to the default ladder (720p, 480p, 360p for this source) and a poster,
# store on three storage nodes, record), beside ffmpeg alone writing the same DASH ladder
# to a local folder, ROUNDS rounds each, alternating; the bitrate each rendition came out
# at; then the web node's peak memory while a ~1 GB file uploads (the body must stream to
# disk). Updates the "upload" section of BENCHMARKS.md.
#
#   scripts/bench/upload.sh
#   ROUNDS=5 BIG_MB=2000 scripts/bench/upload.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
BIG_MB=${BIG_MB:-1000}

bench_init upload 1800 ffmpeg curl python3
load_before="$(uptime | sed 's/.*load average: //')"

# --- the cluster -------------------------------------------------------------------
start_cluster --max-upload-bytes $((4 * BIG_MB * 1000 * 1000))

# --- the clip ------------------------------------------------------------------------
log "making a 60 s 1280x720 clip"
ffmpeg -hide_banner -loglevel error -nostdin -y \
  -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 60 -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -shortest "$WORK/clip.mp4"
clip_mb=$(du -m "$WORK/clip.mp4" | cut -f1)

# ffmpeg alone encoding the default ladder for a 720p source in one run (one decode,
# split, one scale per rendition); the web node encodes the lowest rendition first and
# the rest after (src/web/publish.rs, scripts/bench/publish.sh).
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
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

declare -a tt ref
for round in $(seq "$ROUNDS"); do
  order=(tritontube ffmpeg)
  ((round % 2 == 0)) && order=(ffmpeg tritontube)
  for what in "${order[@]}"; do
    if [[ $what == tritontube ]]; then
      ln -f "$WORK/clip.mp4" "$WORK/bench-upload-$round.mp4"
      start=$(now)
      code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 600 \
        -F "file=@$WORK/bench-upload-$round.mp4" "$web/upload")
      tt[round]=$(elapsed "$start")
      [[ $code == 303 ]] || {
        echo "upload $round answered $code" >&2
        exit 1
      }
      curl -sSf -o /dev/null "$web/content/bench-upload-$round/manifest.mpd"
    else
      start=$(now)
      reference "$WORK/ref-$round"
      ref[round]=$(elapsed "$start")
      [[ -d "$WORK/ladder" ]] || mv "$WORK/ref-$round" "$WORK/ladder"
      rm -rf "$WORK/ref-$round"
    fi
    log "round $round: $what done"
  done
  log "round $round: upload to ready ${tt[round]} s, ffmpeg alone ${ref[round]} s"
done
web_hwm_clips=$(mem_mib "$web_pid" VmHWM)
tt_med=$(median "${tt[@]}")
ref_med=$(median "${ref[@]}")
up_ratio=$(ratio "$tt_med" "$ref_med")

# The renditions as stored: the web node's own manifest, and each representation's
# segment bytes over the clip's 60 s.
curl -sSf -o "$WORK/stored.mpd" "$web/content/bench-upload-1/manifest.mpd"
representations=$(grep -c '<Representation' "$WORK/stored.mpd")
rendition_rows=()
for r in 0 1 2 3; do
  bytes=$(find "$WORK/ladder" -name "chunk-$r-*.m4s" -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  ((bytes > 0)) || continue
  size=$(grep -o "<Representation id=\"$r\"[^>]*" "$WORK/stored.mpd" | grep -o 'width="[0-9]*" height="[0-9]*"' | tr -dc '0-9 ' | awk '{ print $1 "x" $2 }' || true)
  target=$(grep -o "<Representation id=\"$r\"[^>]*" "$WORK/stored.mpd" | grep -o 'bandwidth="[0-9]*"' | tr -dc '0-9' || true)
  rendition_rows+=("| $r | ${size:-audio} | $((${target:-0} / 1000)) | $(awk -v b="$bytes" 'BEGIN { printf "%.0f", b * 8 / 60 / 1000 }') |")
done

# --- a ~1 GB upload: memory must stay bounded ----------------------------------------
log "making a ~$BIG_MB MB MP4"
ffmpeg -hide_banner -loglevel error -nostdin -y \
  -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 10 -c:v libx264 -preset ultrafast -b:v 50M -c:a aac -shortest "$WORK/piece.mp4"
piece=$(stat -c %s "$WORK/piece.mp4")
loops=$(((BIG_MB * 1000 * 1000 + piece - 1) / piece - 1))
ffmpeg -hide_banner -loglevel error -nostdin -y -stream_loop "$loops" -i "$WORK/piece.mp4" \
  -c copy "$WORK/bench-big.mp4"
rm "$WORK/piece.mp4"
big=$(stat -c %s "$WORK/bench-big.mp4")
big_mb=$((big / 1000 / 1000))
hwm_before=$(mem_mib "$web_pid" VmHWM)
rss_before=$(mem_mib "$web_pid" VmRSS)
log "uploading $big_mb MB"
start_bg big-upload curl -sS -o /dev/null --max-time 600 -F "file=@$WORK/bench-big.mp4" "$web/upload"
curl_pid=$LAST_PID
start=$(now)
received=0
peak_rss=0
# The body is in once the web node's work folder holds a file of the whole size.
while ((received < big)); do
  sleep 0.2
  kill -0 "$curl_pid" 2>/dev/null || break
  received=$(find "$WORK/web-work" -type f -printf '%s\n' 2>/dev/null | sort -n | tail -1)
  received=${received:-0}
  rss=$(mem_mib "$web_pid" VmRSS)
  ((rss > peak_rss)) && peak_rss=$rss
done
receive_s=$(elapsed "$start")
hwm_big=$(mem_mib "$web_pid" VmHWM)
receive_mbs=$(awk -v b="$big" -v s="$receive_s" 'BEGIN { printf "%.0f", b / 1e6 / s }')
log "received $received of $big bytes in $receive_s s; web node peak $hwm_big MiB"
# Only the streaming of the body was under test: stop the client and the transcode of
# this long clip (the web node's own ffmpeg/ffprobe children).
stop_pid "$curl_pid"
for child in $(pgrep -P "$web_pid" || true); do kill -TERM "$child" 2>/dev/null || true; done
load_after="$(uptime | sed 's/.*load average: //')"
((received >= big)) || {
  echo "the 1 GB upload did not arrive whole ($received of $big bytes)" >&2
  exit 1
}

# --- report --------------------------------------------------------------------------
out="$WORK/section.md"
{
  echo "## Upload to ready, beside ffmpeg alone"
  echo
  echo "\`scripts/bench/upload.sh\` (ROUNDS=$ROUNDS BIG_MB=$BIG_MB)"
  echo
  machine_info "before / after"
  echo "  (before: $load_before; after: $load_after)"
  echo "- setup: 3 storage nodes + 1 web node (release, R = 2) on 127.0.0.1. A 60 s 1280x720"
  echo "  25 fps clip with AAC audio ($clip_mb MB); Tritontube: \`curl -F file=@clip.mp4\` POST /upload"
  echo "  until the 303 (receive, ffprobe, transcode to the ladder 720p/480p/360p + AAC, make"
  echo "  and store the poster, store every file on 2 nodes, record); reference: the same"
  echo "  ffmpeg DASH ladder command (src/web/transcode.rs) into a local folder, no poster."
  echo "  Rounds alternate which goes first."
  echo
  echo "| round | Tritontube upload → 303, s | ffmpeg alone, s | ratio |"
  echo "|---|---:|---:|---:|"
  for round in $(seq "$ROUNDS"); do
    echo "| $round | ${tt[round]} | ${ref[round]} | $(ratio "${tt[round]}" "${ref[round]}" 3) |"
  done
  echo "| **median** | **$tt_med** | **$ref_med** | **$(ratio "$tt_med" "$ref_med" 3)** |"
  echo
  echo "| target | Tritontube | reference | ratio | |"
  echo "|---|---:|---:|---:|---|"
  echo "| upload to ready ≤ 1.15 × ffmpeg alone | $tt_med s | $ref_med s | $(ratio "$tt_med" "$ref_med" 3) | $(verdict "$up_ratio" le 1.15) |"
  echo "| web node peak RSS (VmHWM) after the ${ROUNDS} clip uploads | $web_hwm_clips MiB | | | |"
  echo "| web node while a $big_mb MB MP4 uploads: peak RSS (VmHWM) | $hwm_big MiB (RSS before $rss_before MiB, peak before $hwm_before MiB; highest RSS sampled $peak_rss MiB) | file size $big_mb MB | $(ratio "$hwm_big" "$big_mb" 3) | bounded |"
  echo "| body received (loopback) | $big_mb MB in $receive_s s = $receive_mbs MB/s | | | |"
  echo
  echo "The ladder as stored ($representations representations in the web node's manifest);"
  echo "measured = segment bytes × 8 / 60 s, from the reference run's output (same command):"
  echo
  echo "| representation | size | target, kbit/s (manifest bandwidth) | measured, kbit/s |"
  echo "|---|---|---:|---:|"
  printf '%s\n' "${rendition_rows[@]}"
} >"$out"
cat "$out"
update_section upload "$out"
