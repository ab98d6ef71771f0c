#!/usr/bin/env bash
# Environment for a local five-member etcd cluster, one member per loopback address,
# client port 2379 and peer port 2380 on each, as the original Tritontube set it up.
#
#   source setupenv.sh        # exports the variables and prints each member's command
#
# Then either run one member per terminal with the printed commands, or start all five
# in the background with `scripts/etcd-cluster.sh start`.
# Set SETUPENV_QUIET=1 to export without printing.

export ETCDCTL_API=3
export TOKEN=tritontube-token
export CLUSTER_STATE=new
export NAME_1=machine-1
export NAME_2=machine-2
export NAME_3=machine-3
export NAME_4=machine-4
export NAME_5=machine-5
export HOST_1=127.0.0.1
export HOST_2=127.0.0.2
export HOST_3=127.0.0.3
export HOST_4=127.0.0.4
export HOST_5=127.0.0.5
export CLUSTER=${NAME_1}=http://${HOST_1}:2380,${NAME_2}=http://${HOST_2}:2380,${NAME_3}=http://${HOST_3}:2380,${NAME_4}=http://${HOST_4}:2380,${NAME_5}=http://${HOST_5}:2380
# The endpoints for `tritontube web … etcd $ENDPOINTS` and for etcdctl.
export ENDPOINTS=${HOST_1}:2379,${HOST_2}:2379,${HOST_3}:2379,${HOST_4}:2379,${HOST_5}:2379

# Linux routes all of 127.0.0.0/8 to the loopback interface; macOS only 127.0.0.1, so
# the other four addresses need aliases on lo0.
if [ "$(uname -s)" = "Darwin" ]; then
    for host in "$HOST_2" "$HOST_3" "$HOST_4" "$HOST_5"; do
        if ! ifconfig lo0 | grep -q "inet ${host} "; then
            echo "adding loopback alias ${host} (sudo)"
            sudo ifconfig lo0 alias "${host}" up
        fi
    done
fi

if [ "${SETUPENV_QUIET:-0}" != "1" ]; then
    for i in 1 2 3 4 5; do
        name_var="NAME_${i}"
        host_var="HOST_${i}"
        name=${!name_var}
        host=${!host_var}
        cat <<CMD

# Terminal ${i} (${name}):
etcd --data-dir=data/etcd/${name}.etcd --name ${name} \\
    --initial-advertise-peer-urls http://${host}:2380 --listen-peer-urls http://${host}:2380 \\
    --advertise-client-urls http://${host}:2379 --listen-client-urls http://${host}:2379 \\
    --initial-cluster \${CLUSTER} \\
    --initial-cluster-state \${CLUSTER_STATE} --initial-cluster-token \${TOKEN}
CMD
    done
    echo
    echo "# Check: etcdctl --endpoints=\${ENDPOINTS} endpoint status -w table"
fi
