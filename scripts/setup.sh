#!/usr/bin/env bash
# Installs what Tritontube needs to build, run and test on a bare Debian 12 machine,
# skipping whatever is already there. Each requirement names the file or command the
# project really uses, not just a package: packages are installed with
# --no-install-recommends, so something a package only recommends (the protobuf
# includes beside protoc, Chromium's fonts) must be asked for by name.
#
# usage: scripts/setup.sh                    everything: build, run, tests, benchmarks
#        scripts/setup.sh --runtime          only what building and `tritontube up` need
#        scripts/setup.sh --check [--runtime]
#                                            report what is missing, install nothing;
#                                            exits 1 naming every missing file or command
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

runtime_only=false
check_only=false
for arg in "$@"; do
  case $arg in
    --runtime) runtime_only=true ;;
    --check) check_only=true ;;
    -h | --help)
      sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "setup: unknown option $arg (see --help)" >&2
      exit 2
      ;;
  esac
done

# One requirement a line: scope, Debian package, kind of check, what is checked, why.
# scope: build (cargo build), run (tritontube up), test (scripts/test.sh), bench
# (scripts/bench). kind: cmd (on PATH), file (exists), python (module imports).
requirements() {
  cat <<'EOF'
build protobuf-compiler cmd  protoc                                          tonic and etcd-client generate their gRPC code with it
build libprotobuf-dev   file /usr/include/google/protobuf/descriptor.proto   etcd-client's protos import the well-known types
build libprotobuf-dev   file /usr/include/google/protobuf/timestamp.proto    etcd-client's protos import the well-known types
build build-essential   cmd  cc                                              rusqlite compiles its bundled SQLite from C
build build-essential   cmd  make                                            build scripts of C dependencies
build pkg-config        cmd  pkg-config                                      build scripts of C dependencies
run   ffmpeg            cmd  ffmpeg                                          transcoding uploads to MPEG-DASH
run   ffmpeg            cmd  ffprobe                                         checking that an upload is a video
test  etcd-server       cmd  etcd                                            the tests' etcd clusters
test  etcd-client       cmd  etcdctl                                         scripts/etcd-cluster.sh checks member health with it
test  tmux              cmd  tmux                                            the console test drives a real terminal
test  chromium          cmd  chromium                                        the browser test (upload and playback)
test  fonts-liberation  file /usr/share/fonts/truetype/liberation            text in Chromium's pages (only recommended by chromium)
test  nodejs            cmd  node                                            runs the browser test's script
test  npm               cmd  npm                                             installs playwright-core for the browser test
test  python3           cmd  python3                                         scripts/compat-check.sh's independent client
test  python3-venv      python venv                                          scripts/compat-check.sh installs grpcio into a venv
test  prometheus        cmd  promtool                                        the metrics test checks every /metrics endpoint
test  iproute2          cmd  ip                                              tests/multi_host/ makes network namespaces, a bridge and veth pairs
build curl              cmd  curl                                            rustup's installer when cargo is missing; scripts wait for servers with it
build ca-certificates   file /etc/ssl/certs/ca-certificates.crt             cargo and rustup fetch over HTTPS
bench wrk               cmd  wrk                                             HTTP load in scripts/bench
bench nginx-light       cmd  nginx                                           the reference server in scripts/bench/segments.sh
bench hyperfine         cmd  hyperfine                                       timing whole commands in scripts/bench
EOF
}

wanted_scope() {
  case $1 in
    build | run) return 0 ;;
    *) ! $runtime_only ;;
  esac
}

present() {
  local kind=$1 what=$2
  case $kind in
    cmd) command -v "$what" >/dev/null 2>&1 ;;
    file) [[ -e $what ]] ;;
    python) command -v python3 >/dev/null 2>&1 && python3 -c "import $what, ensurepip" 2>/dev/null ;;
    *)
      echo "setup: unknown check kind $kind" >&2
      return 1
      ;;
  esac
}

# Lines of requirements (in scope) that are not met now.
unmet() {
  local scope package kind what why
  while read -r scope package kind what why; do
    wanted_scope "$scope" || continue
    present "$kind" "$what" || printf '%s\t%s\t%s\t%s\t%s\n' "$scope" "$package" "$kind" "$what" "$why"
  done < <(requirements)
}

# The Rust toolchain and the npm packages are not Debian packages: checked on their own.
unmet_other() {
  command -v cargo >/dev/null 2>&1 || echo "cargo (the Rust toolchain, from rustup)"
  if ! $runtime_only; then
    cargo fmt --version >/dev/null 2>&1 || echo "cargo fmt (rustup component rustfmt)"
    cargo clippy --version >/dev/null 2>&1 || echo "cargo clippy (rustup component clippy)"
    [[ -d tests/browser/node_modules/playwright-core ]] ||
      echo "tests/browser/node_modules/playwright-core (npm ci in tests/browser)"
  fi
}

report() {
  local missing other
  missing=$(unmet)
  other=$(unmet_other)
  if [[ -z $missing && -z $other ]]; then
    echo "setup: everything needed is present"
    return 0
  fi
  echo "setup: missing:" >&2
  if [[ -n $missing ]]; then
    while IFS=$'\t' read -r scope package kind what why; do
      printf '  %-5s %-52s (package %s): %s\n' "$scope" "$what" "$package" "$why" >&2
    done <<<"$missing"
  fi
  if [[ -n $other ]]; then
    while read -r line; do printf '  %s\n' "$line" >&2; done <<<"$other"
  fi
  return 1
}

if $check_only; then
  report
  exit
fi

mapfile -t packages < <(unmet | cut -f2 | sort -u)
if ((${#packages[@]})); then
  echo "setup: installing ${packages[*]}"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: installing the Rust toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
fi
if ! $runtime_only; then
  for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
      rustup component add "$component"
    fi
  done
  if [[ ! -d tests/browser/node_modules/playwright-core ]]; then
    echo "setup: installing the browser test's npm packages"
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

# What was just installed must really provide what the project uses.
report
echo "setup: ready"
