# Harness self-test: proves the VM itself (modules, kernel WireGuard, generic netlink, namespaces,
# the static binary) with the stock tools, so that a failing wesher case is wesher's fault.
# These are NOT wesher tests: wesher is only asked for --version here.

case_add harness-selftest/modules 120 harness_modules
harness_modules() {
    must modprobe -a wireguard veth bridge tun
    for m in wireguard veth bridge tun; do
        [ -d "/sys/module/$m" ] || fail "module $m is not loaded"
    done
}

case_add harness-selftest/wireguard-link 60 harness_wireguard_link
harness_wireguard_link() {
    must $IP link add wgself0 type wireguard
    $IP -d link show wgself0 | grep -q 'wireguard' || fail "wgself0 is not of kind wireguard"
    must $WG set wgself0 listen-port 51999
    [ "$($WG show wgself0 listen-port)" = 51999 ] || fail "wg did not set the listen port"
    must $IP link del wgself0
}

case_add harness-selftest/genl-family 60 harness_genl_family
harness_genl_family() {
    out=$(must $GENL ctrl get name wireguard)
    printf '%s\n' "$out"
    echo "$out" | grep -q 'Name: wireguard' || fail "generic netlink family wireguard not listed"
}

case_add harness-selftest/static-binary 120 harness_static_binary
harness_static_binary() {
    out=$(must $WESHER --version)
    printf '%s\n' "$out"
    echo "$out" | grep -q '^wesher ' || fail "unexpected --version output: $out"
}

case_add harness-selftest/netns-bridge 120 harness_netns_bridge
harness_netns_bridge() {
    must $IP link add $BRIDGE type bridge
    must $IP link set $BRIDGE up
    for n in $NODES; do
        must $IP netns add "node$n"
        must $IP link add "veth$n" type veth peer name eth0 netns "node$n"
        must $IP link set "veth$n" master $BRIDGE up
        must in_node "$n" $IP link set lo up
        must in_node "$n" $IP addr add "$SUBNET.$n/24" dev eth0
        must in_node "$n" $IP link set eth0 up
        # Each node's own hosts file (ip netns exec binds it over /etc/hosts).
        mkdir -p "/etc/netns/node$n"
        printf '127.0.0.1\tlocalhost\n' >"/etc/netns/node$n/hosts"
    done
    for n in $NODES; do
        for m in $NODES; do
            [ "$n" = "$m" ] && continue
            wait_for 20 "node$n pings $SUBNET.$m" in_node "$n" $PING -c1 -W1 "$SUBNET.$m"
        done
    done
    # The per-namespace hosts file is what a process in the namespace sees.
    echo "$SUBNET.2 hostsprobe" >>/etc/netns/node1/hosts
    must in_node 1 $PING -c1 -W1 hostsprobe
    if $PING -c1 -W1 hostsprobe >/dev/null 2>&1; then fail "the root namespace resolved node1's name"; fi
    sed -i '/hostsprobe/d' /etc/netns/node1/hosts
}

case_add harness-selftest/wg-tool-mesh 240 harness_wg_tool_mesh
# A kernel WireGuard full mesh configured with wg, pinged over the tunnels, then removed.
harness_wg_tool_mesh() {
    umask 077
    for n in $NODES; do
        in_node "$n" $WG genkey >"/tmp/self$n.key" || fail "wg genkey"
        $WG pubkey <"/tmp/self$n.key" >"/tmp/self$n.pub" || fail "wg pubkey"
        must in_node "$n" $IP link add wgself type wireguard
        must in_node "$n" $WG set wgself listen-port 51820 private-key "/tmp/self$n.key"
        must in_node "$n" $IP addr add "10.77.0.$n/32" dev wgself
        must in_node "$n" $IP link set wgself up
    done
    for n in $NODES; do
        for m in $NODES; do
            [ "$n" = "$m" ] && continue
            must in_node "$n" $WG set wgself peer "$(cat "/tmp/self$m.pub")" \
                endpoint "$SUBNET.$m:51820" allowed-ips "10.77.0.$m/32"
            must in_node "$n" $IP route add "10.77.0.$m/32" dev wgself
        done
    done
    for n in $NODES; do
        for m in $NODES; do
            [ "$n" = "$m" ] && continue
            wait_for 30 "node$n pings 10.77.0.$m over WireGuard" in_node "$n" $PING -c1 -W2 "10.77.0.$m"
        done
    done
    in_node 1 $WG show wgself
    hs=$(in_node 1 $WG show wgself latest-handshakes | awk '$2 > 0' | wc -l)
    [ "$hs" = 2 ] || fail "node1 has $hs handshaken peers, want 2"
    for n in $NODES; do must in_node "$n" $IP link del wgself; done
}
