# One guest's part in the cross-architecture mesh (tests/vm/run boots one guest per architecture):
# MESH_INDEX is this guest's number (1, the x86_64 guest, bridges its MESH_NICS links to the
# others and starts the cluster), MESH_NAMES the node names in index order. Each guest runs one
# wesher node in its root namespace on 192.168.79.INDEX and pings every other node by name.

MESH_SUBNET=192.168.79
MESH_IFACE=wgoverlay

case_add "mesh/$ARCH/joins" 900 mesh_joins
case_add "mesh/$ARCH/pings-every-node" 600 mesh_pings

mesh_name() { # INDEX
    echo "$MESH_NAMES" | cut -d' ' -f"$1"
}

on_fail() {
    echo "--- wesher log (tail)"
    tail -n 30 /tmp/mesh.log
    $WG show all 2>&1
    $IP -br addr
}

mesh_joins() {
    must modprobe -a wireguard virtio_net virtio_pci bridge
    if [ "$MESH_INDEX" = 1 ]; then
        # The hub: every other guest's link on one bridge with this node's address.
        must $IP link add br0 type bridge
        i=0
        while [ "$i" -lt "$MESH_NICS" ]; do
            wait_for 30 "eth$i" $IP link show "eth$i"
            must $IP link set "eth$i" master br0 up
            i=$((i + 1))
        done
        must $IP addr add "$MESH_SUBNET.1/24" dev br0
        must $IP link set br0 up
        join=--init
    else
        wait_for 30 eth0 $IP link show eth0
        must $IP addr add "$MESH_SUBNET.$MESH_INDEX/24" dev eth0
        must $IP link set eth0 up
        join="--join $MESH_SUBNET.1"
    fi
    must $IP link set lo up
    # One cluster key for all four guests.
    sh -c "exec $WESHER --cluster-key a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s= --node-name $(mesh_name "$MESH_INDEX") \
        --bind-addr $MESH_SUBNET.$MESH_INDEX --gossip-profile lan $join" >/tmp/mesh.log 2>&1 </dev/null &
    echo $! >/tmp/mesh.pid
    want=$(($(echo "$MESH_NAMES" | wc -w) - 1))
    # Slower guests boot later: wait for every node's peer.
    wait_for 840 "$want WireGuard peers on $MESH_IFACE" sh -c \
        "[ \"\$($WG show $MESH_IFACE peers 2>/dev/null | wc -l)\" = $want ]"
    $WG show $MESH_IFACE
}

mesh_pings() {
    i=1
    for name in $MESH_NAMES; do
        if [ "$i" != "$MESH_INDEX" ]; then
            grep -q "[[:space:]]$name\([[:space:]]\|$\)" /etc/hosts || fail "/etc/hosts has no line for $name: $(cat /etc/hosts)"
            wait_for 120 "$(mesh_name "$MESH_INDEX") pings $name by name" $PING -c1 -W3 "$name"
            subresult PASS "mesh/$ARCH/ping/$name"
        fi
        i=$((i + 1))
    done
    hs=$($WG show $MESH_IFACE latest-handshakes | awk '$2 > 0' | wc -l)
    [ "$hs" = "$(($(echo "$MESH_NAMES" | wc -w) - 1))" ] || fail "handshakes with $hs peers only"
}
