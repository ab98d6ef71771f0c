#!/usr/bin/env bash
# Wire compatibility with the original Tritontube storage contract: generates a Python
# client from tests/compat/original_storage.proto (grpcio-tools), starts
# `tritontube storage` on a free port in a temporary folder, and uploads, downloads,
# lists and deletes through that independent client. Exits non-zero on any mismatch.
#
# Environment: TRITONTUBE_BIN   binary to test (default: cargo build, target/debug)
#              COMPAT_VENV      virtualenv for grpcio (default: under $TMPDIR)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=${TMPDIR:-/tmp}
work=$(mktemp -d "$tmp/tritontube-compat.XXXXXX")
node_pid=

cleanup() {
  if [[ -n $node_pid ]] && kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A Python with grpcio and grpcio-tools: the system one if it has them, else a venv.
python=python3
if ! "$python" -c 'import grpc, grpc_tools' 2>/dev/null; then
  venv=${COMPAT_VENV:-$tmp/tritontube-compat-venv}
  if ! "$venv/bin/python" -c 'import grpc, grpc_tools' 2>/dev/null; then
    echo "installing grpcio and grpcio-tools into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check grpcio grpcio-tools
  fi
  python=$venv/bin/python
fi

if [[ -z ${TRITONTUBE_BIN:-} ]]; then
  (cd "$root" && cargo build --quiet --bin tritontube)
  TRITONTUBE_BIN=${CARGO_TARGET_DIR:-$root/target}/debug/tritontube
fi

mkdir -p "$work/gen"
"$python" -m grpc_tools.protoc -I "$root/tests/compat" \
  --python_out="$work/gen" --grpc_python_out="$work/gen" original_storage.proto

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
store="$work/store"
"$TRITONTUBE_BIN" storage --host 127.0.0.1 --port "$port" "$store" 2>"$work/node.log" &
node_pid=$!

if ! PYTHONPATH="$work/gen" "$python" "$root/tests/compat/check_storage.py" "127.0.0.1:$port" "$store"; then
  echo "--- storage node log ---" >&2
  cat "$work/node.log" >&2
  exit 1
fi

# The node must also stop cleanly on SIGTERM.
kill -TERM "$node_pid"
if ! wait "$node_pid"; then
  echo "storage node did not exit cleanly on SIGTERM" >&2
  cat "$work/node.log" >&2
  exit 1
fi
node_pid=
echo "compat-check: passed"
