#!/usr/bin/env bash
# A local five-member etcd cluster in the background, as set up by setupenv.sh
# (members on 127.0.0.1 … 127.0.0.5, client port 2379, peer port 2380).
#
#   scripts/etcd-cluster.sh start  [DIR]   start the members, wait for a leader, show health
#   scripts/etcd-cluster.sh stop   [DIR]   stop the members this script started
#   scripts/etcd-cluster.sh status [DIR]   show each member's status and health
#
# DIR (default ./data/etcd) holds each member's data folder, log and pid file.
# ETCD and ETCDCTL name the binaries if they are not on PATH.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmd=${1:-status}
dir=${2:-./data/etcd}
ETCD=${ETCD:-etcd}
ETCDCTL=${ETCDCTL:-etcdctl}

SETUPENV_QUIET=1 source "$root/setupenv.sh"

# etcdctl wants comma-separated host:port endpoints.
ctl() {
    "$ETCDCTL" --endpoints="$ENDPOINTS" --dial-timeout=1s --command-timeout=3s "$@"
}

# The pid in $1 if that process is still an etcd this script started.
live_pid() {
    local pidfile=$1 pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    case "$(ps -p "$pid" -o comm= 2>/dev/null)" in
        *etcd*) echo "$pid" ;;
        *) return 1 ;;
    esac
}

has_leader() {
    local json leaders members l
    json=$(ctl endpoint status -w json 2>/dev/null) || true
    leaders=$(grep -o '"leader":[0-9]*' <<<"$json" | cut -d: -f2 | sort -u)
    members=$(grep -o '"member_id":[0-9]*' <<<"$json" | cut -d: -f2)
    for l in $leaders; do
        [ "$l" != 0 ] && grep -qx "$l" <<<"$members" && return 0
    done
    return 1
}

show_status() {
    echo "== endpoint status"
    ctl endpoint status -w table || true
    echo "== endpoint health"
    ctl endpoint health -w table || true
}

start() {
    command -v "$ETCD" >/dev/null || { echo "etcd not found (set ETCD=/path/to/etcd)" >&2; exit 1; }
    mkdir -p "$dir"
    local i name host pidfile pid
    for i in 1 2 3 4 5; do
        name_var="NAME_${i}"; host_var="HOST_${i}"
        name=${!name_var}; host=${!host_var}
        pidfile="$dir/$name.pid"
        if pid=$(live_pid "$pidfile"); then
            echo "$name already running (pid $pid)"
            continue
        fi
        nohup "$ETCD" --data-dir="$dir/$name.etcd" --name "$name" \
            --initial-advertise-peer-urls "http://$host:2380" --listen-peer-urls "http://$host:2380" \
            --advertise-client-urls "http://$host:2379" --listen-client-urls "http://$host:2379" \
            --initial-cluster "$CLUSTER" \
            --initial-cluster-state "$CLUSTER_STATE" --initial-cluster-token "$TOKEN" \
            >>"$dir/$name.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
        echo "started $name on $host:2379 (pid $!, log $dir/$name.log)"
    done

    local waited=0
    until has_leader; do
        for i in 1 2 3 4 5; do
            name_var="NAME_${i}"; name=${!name_var}
            if ! live_pid "$dir/$name.pid" >/dev/null; then
                echo "$name exited; the end of its log:" >&2
                tail -n 5 "$dir/$name.log" >&2
                exit 1
            fi
        done
        if [ "$waited" -ge 60 ]; then
            echo "no leader after 30 s; see the logs in $dir" >&2
            show_status
            exit 1
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    echo "the cluster has a leader"
    show_status
    echo "endpoints: $ENDPOINTS"
}

stop() {
    local i name pidfile pid n
    for i in 1 2 3 4 5; do
        name_var="NAME_${i}"; name=${!name_var}
        pidfile="$dir/$name.pid"
        if pid=$(live_pid "$pidfile"); then
            kill -TERM "$pid"
            for n in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            if kill -0 "$pid" 2>/dev/null; then
                kill -KILL "$pid"
            fi
            echo "stopped $name (pid $pid)"
        fi
        rm -f "$pidfile"
    done
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) show_status ;;
    *) echo "usage: $0 start|stop|status [DIR]" >&2; exit 2 ;;
esac
