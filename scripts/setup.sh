#!/usr/bin/env bash
# Installs what Tritontube needs to build, run and test, skipping whatever is already there:
# the Rust toolchain check, protoc (tonic and etcd-client generate code with it), ffmpeg and
# ffprobe (transcoding), etcd (the replicated metadata store), Chromium and tmux (browser
# and console tests), wrk and nginx (benchmarks), and the browser test's npm packages.
#
# usage: scripts/setup.sh            everything
#        scripts/setup.sh --runtime  only what `tritontube up` needs
set -euo pipefail
cd "$(dirname "$0")/.."

runtime_only=false
[[ "${1:-}" == "--runtime" ]] && runtime_only=true

# command → Debian package providing it
declare -A packages=(
  [protoc]=protobuf-compiler
  [ffmpeg]=ffmpeg
  [ffprobe]=ffmpeg
  [cc]=build-essential
  [pkg-config]=pkg-config
)
if ! $runtime_only; then
  packages+=(
    [etcd]=etcd-server
    [etcdctl]=etcd-client
    [chromium]=chromium
    [tmux]=tmux
    [node]=nodejs
    [npm]=npm
    [wrk]=wrk
    [nginx]=nginx-light
    [hyperfine]=hyperfine
    [python3]=python3
  )
fi

missing=()
for cmd in "${!packages[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "setup: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

if ! $runtime_only && [[ ! -d tests/browser/node_modules/playwright-core ]]; then
  echo "setup: installing the browser test's npm packages"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: ready"
