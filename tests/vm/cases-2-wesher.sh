# wesher itself on kernel WireGuard: three nodes, one per namespace of the self-test topology,
# each with its own node name, hosts file (/etc/netns/nodeN/hosts) and state directory. wesher
# creates and configures the links; wg and ip only look. Cases run in order and build on each other.

WG_IFACE=wgoverlay
WG_PORT=51900 # not the default, to see the flag reach both the device and the peers' endpoints
BANNER="# ! managed automatically by wesher interface $WG_IFACE"
# A second cluster (Go wesher's scenario 5) on node2 and node3: its own key, ports, interface, net.
B_IFACE=wgb
B_PORT=51901
B_BANNER="# ! managed automatically by wesher interface $B_IFACE"

if [ -n "$AGENT" ]; then
    case_add wesher/mesh-forms 240 wesher_mesh_forms
    case_add wesher/ping-by-hostname 180 wesher_ping_by_hostname
    case_add wesher/wg-show-agrees 120 wesher_wg_show_agrees
    case_add wesher/footprint-idle 180 wesher_footprint_idle
    case_add wesher/status-lists-peers 60 wesher_status_lists_peers
    case_add wesher/restart-new-key 240 wesher_restart_new_key
    case_add wesher/peer-removed-restored 180 wesher_peer_removed_restored
    case_add wesher/link-deleted-recreated 240 wesher_link_deleted_recreated
    case_add wesher/leave-removes-peer 180 wesher_leave_removes_peer
    case_add wesher/shutdown-deletes-link 180 wesher_shutdown_deletes_link
    case_add wesher/simultaneous-start 240 wesher_simultaneous_start
    case_add wesher/resume-from-state 240 wesher_resume_from_state
    case_add wesher/two-clusters 300 wesher_two_clusters
    case_add wesher/shutdown-all 180 wesher_shutdown_all
fi

# The overlay address Go wesher derives for nodeN in 10.0.0.0/8 (FNV-1a 128 vectors, SPEC 3).
overlay_of() {
    case $1 in 1) echo 10.59.73.60 ;; 2) echo 10.59.76.237 ;; 3) echo 10.59.75.178 ;; esac
}
# The same in cluster B's 10.11.0.0/16: the hash's last two bytes.
overlay_b_of() {
    echo "10.11.$(overlay_of "$1" | cut -d. -f3-)"
}

# Starts a wesher instance TAG in nodeN under a wrapper shell that records its process id in
# /tmp/TAG.pid and its exit code in /tmp/TAG.rc; it logs to /tmp/TAG.log.
start_inst() { # TAG N KEYFILE [ARGS...]
    tag=$1 n=$2 keyfile=$3
    shift 3
    rm -f "/tmp/$tag.rc" "/tmp/$tag.pid"
    [ -f "$keyfile" ] || head -c 32 /dev/urandom | base64 >"$keyfile"
    echo "=== start $tag in node$n: $*" >>"/tmp/$tag.log"
    # ip netns exec gives the node its own mount namespace; a tmpfs there gives it its own
    # /run/wesher (control socket). Both it and the inner shell exec, so $! in the wrapper is
    # wesher's own process id.
    sh -c "$IP netns exec node$n sh -c 'mkdir -p /run/wesher && mount -t tmpfs -o mode=0700 run-wesher /run/wesher &&
        exec $WESHER --cluster-key $(cat "$keyfile") --node-name node$n \
        --state-dir /var/lib/wesher-node$n --bind-addr $SUBNET.$n \
        --gossip-profile lan --log-level debug $*' >>/tmp/$tag.log 2>&1 &
        echo \$! >/tmp/$tag.pid
        wait \$!
        echo \$? >/tmp/$tag.rc" </dev/null >/dev/null 2>&1 &
    wait_for 10 "$tag's pid file" test -s "/tmp/$tag.pid"
}
# Cluster A's instance in nodeN, tagged nodeN.
start_node() { # N [ARGS...]
    n=$1
    shift
    start_inst "node$n" "$n" /tmp/cluster.key --wireguard-port $WG_PORT "$@"
}

# Sends SIGTERM to instance TAG and checks it exits 0 within the leave timeout.
stop_inst() { # TAG
    pid=$(cat "/tmp/$1.pid")
    kill -TERM "$pid" || fail "$1 (pid $pid) was not running"
    wait_for 30 "$1 exits after SIGTERM" test -s "/tmp/$1.rc"
    rc=$(cat "/tmp/$1.rc")
    [ "$rc" = 0 ] || fail "$1 exited $rc after SIGTERM"
}
stop_node() { # N
    stop_inst "node$1"
}
# Whether instance TAG is running.
running() { # TAG
    [ -s "/tmp/$1.pid" ] && [ ! -e "/tmp/$1.rc" ]
}

pubkey_of() { # N [IFACE]
    in_node "$1" $WG show "${2:-$WG_IFACE}" public-key
}

# Node N's WireGuard peers on IFACE, sorted public keys.
peers_of() { # N [IFACE]
    in_node "$1" $WG show "${2:-$WG_IFACE}" peers | sort
}

# True when node N's peers on IFACE are exactly the given nodes' current public keys there.
has_peers_on() { # IFACE N M...
    iface=$1 n=$2
    shift 2
    want=$(for m in "$@"; do pubkey_of "$m" "$iface"; done | sort)
    got=$(peers_of "$n" "$iface")
    echo "node$n $iface peers: $got"
    echo "want: $want"
    [ -n "$got" ] && [ "$got" = "$want" ]
}
has_peers() { # N M...
    has_peers_on $WG_IFACE "$@"
}

# Waits until every node of a full mesh on IFACE has all the others as its only peers.
wait_full_mesh() { # SECONDS IFACE N...
    secs=$1 iface=$2
    shift 2
    for n in "$@"; do
        others=
        for m in "$@"; do [ "$m" = "$n" ] || others="$others $m"; done
        wait_for "$secs" "node$n peers with$others on $iface" has_peers_on "$iface" "$n" $others
    done
}

# On failure, the instances' recent logs and the nodes' WireGuard state (fail() calls this).
on_fail() {
    for f in /tmp/node*.log /tmp/b*.log; do
        [ -f "$f" ] || continue
        echo "--- $f (tail)"
        tail -n 25 "$f"
    done
    for n in $NODES; do
        echo "--- node$n wg show"
        in_node "$n" $WG show all 2>&1
    done
}

wesher_mesh_forms() {
    start_node 1 --init
    # node1 must be listening before the others join; wesher retries anyway.
    wait_for 60 "node1's $WG_IFACE link" in_node 1 $IP link show $WG_IFACE
    start_node 2 --join $SUBNET.1
    start_node 3 --join $SUBNET.1
    for n in $NODES; do
        wait_for 60 "node$n's $WG_IFACE link" in_node "$n" $IP link show $WG_IFACE
    done
    wait_full_mesh 90 $WG_IFACE $NODES
    for n in $NODES; do
        in_node "$n" $IP -d link show $WG_IFACE | grep -q wireguard || fail "node$n: $WG_IFACE is not a kernel wireguard link"
        in_node "$n" $IP link show $WG_IFACE | grep -q 'mtu 1420' || fail "node$n: MTU is not 1420"
        in_node "$n" $IP link show $WG_IFACE | grep -q '[<,]UP[,>]' || fail "node$n: link is not up"
        addrs=$(in_node "$n" $IP -4 -o addr show dev $WG_IFACE | awk '{print $4}')
        [ "$addrs" = "$(overlay_of "$n")/32" ] || fail "node$n: $WG_IFACE addresses '$addrs', want $(overlay_of "$n")/32"
    done
}

wesher_ping_by_hostname() {
    for n in $NODES; do
        for m in $NODES; do
            [ "$n" = "$m" ] && continue
            # The name must resolve to the peer's overlay address through a wesher-managed line.
            line=$(grep -F "$BANNER" "/etc/netns/node$n/hosts" | awk -v h="node$m" '$2 == h')
            [ "$(echo "$line" | awk '{print $1}')" = "$(overlay_of "$m")" ] ||
                fail "node$n's hosts file has no managed line for node$m: $(cat "/etc/netns/node$n/hosts")"
            wait_for 30 "node$n pings node$m by name" in_node "$n" $PING -c1 -W2 "node$m"
        done
        grep -F "$BANNER" "/etc/netns/node$n/hosts" | grep -qw "node$n" && fail "node$n's hosts file lists itself"
    done
    # The pings crossed the tunnels: every node has handshaken with both peers.
    for n in $NODES; do
        hs=$(in_node "$n" $WG show $WG_IFACE latest-handshakes | awk '$2 > 0' | wc -l)
        [ "$hs" = 2 ] || fail "node$n has handshaken with $hs peers, want 2"
    done
}

# Node m's metadata in node n's state file (base64); fails while there is none.
state_meta() {
    tr '{' '\n' <"/var/lib/wesher-node$1/$WG_IFACE.json" | grep "\"Name\": *\"node$2\"" |
        sed -n 's/.*"Meta": *"\([^"]*\)".*/\1/p' | grep .
}

wesher_wg_show_agrees() {
    for n in $NODES; do
        in_node "$n" $WG show $WG_IFACE dump >/tmp/dump || fail "wg show dump on node$n"
        cat /tmp/dump
        port=$(head -n1 /tmp/dump | cut -f3)
        [ "$port" = "$WG_PORT" ] || fail "node$n listens on '$port', want $WG_PORT"
        [ "$(tail -n +2 /tmp/dump | wc -l)" = 2 ] || fail "node$n does not have exactly 2 peers"
        for m in $NODES; do
            [ "$n" = "$m" ] && continue
            pub=$(pubkey_of "$m")
            peer=$(awk -v k="$pub" '$1 == k' /tmp/dump)
            [ -n "$peer" ] || fail "node$n has no peer with node$m's public key $pub"
            endpoint=$(echo "$peer" | cut -f3)
            allowed=$(echo "$peer" | cut -f4)
            keepalive=$(echo "$peer" | cut -f8)
            [ "$endpoint" = "$SUBNET.$m:$WG_PORT" ] || fail "node$n: node$m's endpoint '$endpoint', want $SUBNET.$m:$WG_PORT"
            [ "$allowed" = "$(overlay_of "$m")/32" ] || fail "node$n: node$m's allowed IPs '$allowed', want $(overlay_of "$m")/32"
            [ "$keepalive" = off ] || fail "node$n: node$m's keepalive '$keepalive', want off"
            in_node "$n" $IP -4 route show dev $WG_IFACE | grep -q "^$(overlay_of "$m") " ||
                fail "node$n has no route to node$m's overlay address on $WG_IFACE"
            # What node m advertises: its gob metadata (base64 in node n's state file) holds the key.
            # The agent writes its state at most every 5 s, so the file may not hold node m yet.
            wait_for 15 "node$n's state file holding node$m's metadata" state_meta "$n" "$m"
            meta=$(state_meta "$n" "$m")
            echo "$meta" | base64 -d | strings -n 8 | grep -qF "$pub" ||
                fail "node$m's advertised metadata (in node$n's state) does not carry its device key $pub"
        done
    done
}

# `wesher status --json` asks the running agent over its control socket (in the node's mounts).
wesher_status_lists_peers() {
    for n in $NODES; do
        out=$(nsenter -t "$(cat "/tmp/node$n.pid")" -m -n $WESHER status --json) || fail "wesher status on node$n: $out"
        echo "$out"
        for m in $NODES; do
            [ "$n" = "$m" ] && continue
            echo "$out" | grep -qF "\"name\":\"node$m\"" || fail "node$n's status does not list node$m"
            echo "$out" | grep -qF "\"public_key\":\"$(pubkey_of "$m")\"" || fail "node$n's status lacks node$m's key"
            echo "$out" | grep -qF "\"overlay\":\"$(overlay_of "$m")\"" || fail "node$n's status lacks node$m's overlay address"
        done
    done
}

wesher_restart_new_key() {
    old=$(pubkey_of 2)
    stop_node 2
    start_node 2 --join $SUBNET.1
    wait_for 60 "node2's $WG_IFACE link" in_node 2 $IP link show $WG_IFACE
    new=$(pubkey_of 2)
    [ -n "$new" ] && [ "$new" != "$old" ] || fail "node2 kept its WireGuard key $old across a restart"
    wait_full_mesh 90 $WG_IFACE $NODES
    for n in 1 3; do
        peers_of "$n" | grep -qxF "$old" && fail "node$n still has node2's old key"
        wait_for 30 "node$n pings node2 by name" in_node "$n" $PING -c1 -W2 node2
    done
    wait_for 30 "node2 pings node1 by name" in_node 2 $PING -c1 -W2 node1
}

# Self-healing on kernel WireGuard: a peer removed by hand comes back (the agent reads the
# device back periodically), and so does a deleted link, with its key, address, peers and routes.
wesher_peer_removed_restored() {
    t=$(date +%s)
    in_node 1 $WG set $WG_IFACE peer "$(pubkey_of 2)" remove || fail "wg set ... remove on node1"
    wait_for 90 "node1 restores node2's peer" has_peers 1 2 3
    in_node 1 $IP -4 route show dev $WG_IFACE | grep -q "^$(overlay_of 2) " || fail "node1 lost its route to node2"
    wait_for 30 "node1 pings node2 by name" in_node 1 $PING -c1 -W2 node2
    echo "peer restored and pinged in $(($(date +%s) - t)) s"
}

wesher_link_deleted_recreated() {
    key=$(pubkey_of 1)
    t=$(date +%s)
    in_node 1 $IP link del $WG_IFACE || fail "ip link del on node1"
    wait_for 90 "node1's $WG_IFACE link is back" in_node 1 $IP link show $WG_IFACE
    wait_for 90 "node1 has its peers again" has_peers 1 2 3
    [ "$(pubkey_of 1)" = "$key" ] || fail "node1's recreated link has another key than the one the mesh knows"
    addrs=$(in_node 1 $IP -4 -o addr show dev $WG_IFACE | awk '{print $4}')
    [ "$addrs" = "$(overlay_of 1)/32" ] || fail "node1's recreated link has addresses '$addrs'"
    for m in 2 3; do
        wait_for 30 "node1 pings node$m by name" in_node 1 $PING -c1 -W2 "node$m"
        wait_for 30 "node$m pings node1 by name" in_node "$m" $PING -c1 -W2 node1
    done
    running node1 || fail "wesher on node1 exited when its link was deleted"
    echo "link recreated and the mesh back in $(($(date +%s) - t)) s"
}

wesher_leave_removes_peer() {
    gone=$(pubkey_of 3)
    stop_node 3
    for n in 1 2; do
        wait_for 60 "node$n drops node3's peer" sh -c "! $IP netns exec node$n $WG show $WG_IFACE peers | grep -qxF '$gone'"
        wait_for 30 "node$n drops the route to node3" sh -c \
            "! $IP netns exec node$n $IP -4 route show dev $WG_IFACE | grep -q '^$(overlay_of 3) '"
        wait_for 30 "node$n's hosts file drops node3" sh -c "! grep -F '$BANNER' /etc/netns/node$n/hosts | grep -qw node3"
    done
    has_peers 1 2 || fail "node1's peers changed beyond node3"
    has_peers 2 1 || fail "node2's peers changed beyond node3"
}

wesher_shutdown_deletes_link() {
    # node3 left in the previous case; node1 and node2 stop now.
    stop_node 1
    stop_node 2
    for n in $NODES; do
        if in_node "$n" $IP link show $WG_IFACE >/dev/null 2>&1; then
            fail "node$n's $WG_IFACE link still exists after wesher exited"
        fi
        grep -qF "$BANNER" "/etc/netns/node$n/hosts" && fail "node$n's hosts file keeps managed lines after exit"
        grep -q localhost "/etc/netns/node$n/hosts" || fail "node$n's hosts file lost its own lines"
    done
}

# Go wesher's scenario 4: every node --join the other two, all started together, fresh state.
wesher_simultaneous_start() {
    for n in $NODES; do
        joins=
        for m in $NODES; do [ "$m" = "$n" ] || joins="$joins${joins:+,}$SUBNET.$m"; done
        start_node "$n" --init --join "$joins"
    done
    wait_full_mesh 120 $WG_IFACE $NODES
    wait_for 30 "node1 pings node2 by name" in_node 1 $PING -c1 -W2 node2
    wait_for 30 "node1 pings node3 by name" in_node 1 $PING -c1 -W2 node3
}

# node1's footprint after 60 s idle in the three-node mesh, as one VM-FOOTPRINT line for
# BENCHMARKS.md (the host collects them): stripped binary size, RSS and peak RSS, threads, open
# file descriptors, and CPU time over that minute as a ratio of it (emulated: compare only
# against other figures taken here).
wesher_footprint_idle() {
    pid=$(cat /tmp/node1.pid)
    ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
    before=$(ticks)
    sleep 60
    after=$(ticks)
    running node1 || fail "node1 exited while idle"
    rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status")
    hwm=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$pid/status")
    threads=$(awk '$1 == "Threads:" {print $2}' "/proc/$pid/status")
    fds=$(ls "/proc/$pid/fd" | wc -l)
    # USER_HZ is 100 on every Linux architecture.
    cpu=$(awk -v t=$((after - before)) 'BEGIN { printf "%.4f", t / 100 / 60 }')
    [ -n "$rss" ] && [ -n "$hwm" ] && [ "$fds" -gt 0 ] || fail "cannot read /proc/$pid"
    report "VM-FOOTPRINT $ARCH size=$(wc -c <$WESHER) rss_kib=$rss peak_rss_kib=$hwm threads=$threads fds=$fds cpu_per_idle_s=$cpu"
}

# Without --join a node joins the nodes its state file lists (SPEC 2, resume).
wesher_resume_from_state() {
    grep -q "$SUBNET.1" /var/lib/wesher-node2/$WG_IFACE.json || fail "node2's state file does not list node1's address"
    old=$(pubkey_of 2)
    stop_node 2
    start_node 2
    wait_for 60 "node2's $WG_IFACE link" in_node 2 $IP link show $WG_IFACE
    [ "$(pubkey_of 2)" != "$old" ] || fail "node2 kept its WireGuard key across a restart"
    wait_full_mesh 120 $WG_IFACE $NODES
    sed -n '/=== start/h; /=== start/!H; ${x;p}' /tmp/node2.log | grep -i join
    wait_for 30 "node2 pings node1 by name" in_node 2 $PING -c1 -W2 node1
    wait_for 30 "node3 pings node2 by name" in_node 3 $PING -c1 -W2 node2
}

# Go wesher's scenario 5: node3 is in cluster A (all nodes) and cluster B (node2 and node3),
# each cluster with its own key, ports, interface and overlay network; one leaves B only.
wesher_two_clusters() {
    b_args="--interface $B_IFACE --cluster-port 7947 --wireguard-port $B_PORT --overlay-net 10.11.0.0/16"
    start_inst b2 2 /tmp/clusterB.key $b_args --init
    wait_for 60 "node2's $B_IFACE link" in_node 2 $IP link show $B_IFACE
    start_inst b3 3 /tmp/clusterB.key $b_args --init --join $SUBNET.2
    wait_full_mesh 90 $B_IFACE 2 3
    wait_full_mesh 30 $WG_IFACE $NODES
    in_node 1 $IP link show $B_IFACE >/dev/null 2>&1 && fail "node1 has a $B_IFACE link but is not in cluster B"
    peer=$(in_node 2 $WG show $B_IFACE dump | awk -v k="$(pubkey_of 3 $B_IFACE)" '$1 == k')
    [ "$(echo "$peer" | cut -f3)" = "$SUBNET.3:$B_PORT" ] || fail "node2's $B_IFACE endpoint for node3: $peer"
    [ "$(echo "$peer" | cut -f4)" = "$(overlay_b_of 3)/32" ] || fail "node2's $B_IFACE allowed IPs for node3: $peer"
    [ "$(in_node 2 $WG show $B_IFACE listen-port)" = $B_PORT ] || fail "node2's $B_IFACE listen port"
    wait_for 30 "node2 pings node3 over $B_IFACE" in_node 2 $PING -c1 -W2 "$(overlay_b_of 3)"
    wait_for 30 "node3 pings node2 over $B_IFACE" in_node 3 $PING -c1 -W2 "$(overlay_b_of 2)"
    wait_for 30 "node1 pings node3 over $WG_IFACE" in_node 1 $PING -c1 -W2 node3
    # Each cluster keeps its own lines in the one hosts file.
    for pair in "2 3" "3 2"; do
        n=${pair% *} m=${pair#* }
        grep -F "$B_BANNER" "/etc/netns/node$n/hosts" | grep -q "^$(overlay_b_of "$m")[[:space:]]node${m}[[:space:]]" ||
            fail "node$n's hosts file lacks cluster B's line for node$m: $(cat "/etc/netns/node$n/hosts")"
        grep -F "$BANNER" "/etc/netns/node$n/hosts" | grep -q "^$(overlay_of "$m")[[:space:]]node${m}[[:space:]]" ||
            fail "node$n's hosts file lost cluster A's line for node$m: $(cat "/etc/netns/node$n/hosts")"
    done
    # node3 leaves cluster B only.
    gone=$(pubkey_of 3 $B_IFACE)
    stop_inst b3
    in_node 3 $IP link show $B_IFACE >/dev/null 2>&1 && fail "node3's $B_IFACE link survived its instance"
    wait_for 60 "node2 drops node3 from $B_IFACE" sh -c "! $IP netns exec node2 $WG show $B_IFACE peers | grep -qxF '$gone'"
    grep -qF "$B_BANNER" /etc/netns/node3/hosts && fail "node3's hosts file keeps cluster B's lines"
    grep -qF "$BANNER" /etc/netns/node3/hosts || fail "node3's hosts file lost cluster A's lines with cluster B's"
    wait_full_mesh 30 $WG_IFACE $NODES
    wait_for 30 "node3 pings node1 after leaving cluster B" in_node 3 $PING -c1 -W2 node1
}

wesher_shutdown_all() {
    for tag in node1 node2 node3 b2 b3; do
        if running "$tag"; then stop_inst "$tag"; fi
    done
    for n in $NODES; do
        links=$(in_node "$n" $IP -o link show type wireguard)
        [ -z "$links" ] || fail "node$n keeps WireGuard links after every wesher exited: $links"
        grep -q 'managed automatically by wesher' "/etc/netns/node$n/hosts" && fail "node$n's hosts file keeps managed lines"
    done
    return 0
}
