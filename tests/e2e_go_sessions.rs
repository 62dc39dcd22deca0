//! Traffic from a Go wesher node to ours across a membership event, in network namespaces with
//! wireguard-go. Go wesher cannot be built from Debian's packages, so node1 plays one: the Go
//! memberlist peer (tests/interop/gopeer) publishing Go wesher's gob metadata (no capabilities:
//! we treat it as a Go node and reset our sessions with it after each event), and wireguard-go
//! configured by hand with `wg`, as Go wesher's wgctrl would. It does not replace its peer list
//! at the event as Go wesher does; that only drops its own session, which its next packet
//! re-makes, so the case that matters here is the session it keeps.

mod common;

use common::netns::{assert_running, wait_for, Node, Proc, Topology, CLUSTER_KEY, CONVERGE};
use std::process::{Child, Stdio};
use std::time::Duration;

const IFACE: &str = common::netns::DEFAULT_IFACE;
/// node1's WireGuard private key (32 bytes of 7, clamped by WireGuard).
const GO_PRIVATE: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
/// node1's overlay address (FNV of "node1" in 10.0.0.0/8, as Go wesher would pick it).
const GO_OVERLAY: &str = "10.59.73.60";
/// Without a handshake from our side after a reset, node1's traffic is dropped until WireGuard
/// gives up on the session: 15 s (keepalive 10 s + rekey 5 s). This only bounds that.
const MAX_GAP: Duration = Duration::from_secs(8);

fn must(node: &Node, program: &str, args: &[&str]) -> String {
    let out = node.exec(program, args);
    assert!(
        out.success(),
        "{program} {args:?} in {}: {out:?}",
        node.name
    );
    out.stdout.clone()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gopeer(node: &Node, bin: &std::path::Path, pubkey: &str) -> Killed {
    let log = std::fs::File::create(node.dir().join("gopeer.log")).unwrap();
    let err = log.try_clone().unwrap();
    let mut cmd = node.command(bin);
    cmd.args(["-name", &node.name, "-bind", &node.ip.to_string()])
        .args(["-port", "7946", "-key", CLUSTER_KEY, "-profile", "fast"])
        .args(["-overlay", GO_OVERLAY, "-pubkey", pubkey])
        // It exits when its stdin closes; never written to.
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(err);
    Killed(cmd.spawn().expect("start gopeer"))
}

fn agent<'a>(node: &'a Node, join: &str) -> Proc<'a> {
    node.wesher()
        .args(["--gossip-profile", "lan", "--cluster-key", CLUSTER_KEY])
        .args(["--join", join])
        .spawn()
}

/// Sends of `ping -i 0.1`, one a tenth of a second.
const INTERVAL: Duration = Duration::from_millis(100);

/// The longest run without replies in `ping` output, from the first request to the last
/// (a request that got no reply at all counts too).
fn longest_gap(ping: &str) -> Duration {
    let sent: u32 = ping
        .lines()
        .find_map(|l| l.split(" packets transmitted").next()?.parse().ok())
        .unwrap_or_else(|| panic!("no ping statistics in {ping}"));
    let mut answered: Vec<u32> = ping
        .lines()
        .filter_map(|l| l.split("icmp_seq=").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    answered.sort_unstable();
    let mut bounds = vec![0];
    bounds.extend(answered);
    bounds.push(sent + 1);
    let missed = bounds
        .windows(2)
        .map(|w| w[1] - w[0] - 1)
        .max()
        .unwrap_or(0);
    INTERVAL * missed
}

#[test]
fn go_nodes_traffic_to_us_survives_our_session_resets() {
    let Some(bin) = common::gopeer::build() else {
        return;
    };
    let Some(topo) = Topology::new(3) else {
        return;
    };
    let (go, n2, n3) = (topo.node(1), topo.node(2), topo.node(3));
    let _daemons = [go.start_wireguard(IFACE), n2.start_wireguard(IFACE)];
    let go_public = must(go, "sh", &["-c", &format!("echo {GO_PRIVATE} | wg pubkey")]);
    let go_public = go_public.trim();
    let _gopeer = start_gopeer(go, &bin, go_public);
    let mut agents = vec![agent(n2, &go.ip.to_string())];

    // node2 adds node1 from its metadata; node1 gets node2 as Go wesher would.
    let ours = wait_for("node2 to have node1 as a peer", CONVERGE, || {
        assert_running(&mut agents);
        let dump = n2.wg(IFACE)?;
        dump.peer(go_public)
            .ok_or_else(|| "no peer yet".to_string())?;
        Ok(dump.public_key)
    });
    let our_overlay = n2.overlay_addr(IFACE).unwrap();
    let key_file = go.dir().join("wg.key");
    std::fs::write(&key_file, GO_PRIVATE).unwrap();
    let key_path = key_file.display().to_string();
    must(go, "wg", &["set", IFACE, "private-key", &key_path]);
    must(go, "wg", &["set", IFACE, "listen-port", "51820"]);
    let endpoint = format!("{}:51820", n2.ip);
    let allowed = format!("{our_overlay}/32");
    must(
        go,
        "wg",
        &[
            "set",
            IFACE,
            "peer",
            &ours,
            "endpoint",
            &endpoint,
            "allowed-ips",
            &allowed,
        ],
    );
    let own = format!("{GO_OVERLAY}/32");
    must(go, "ip", &["addr", "add", &own, "dev", IFACE]);
    must(go, "ip", &["link", "set", IFACE, "up"]);
    must(go, "ip", &["route", "add", &allowed, "dev", IFACE]);
    wait_for("node1 to ping node2", CONVERGE, || {
        assert_running(&mut agents);
        go.ping(&our_overlay)
    });

    // node1 pings node2 throughout (its session, which it made), while node3 joining is a
    // membership event after which node2 resets its sessions with node1 (at 0.5, 1.5 and 3 s).
    let mut ping = go.command("ping");
    ping.args(["-i", "0.1", "-W", "1", "-w", "14", &our_overlay])
        .stdout(Stdio::piped());
    let pinger = ping.spawn().expect("start ping");
    std::thread::sleep(Duration::from_secs(2));
    let _d3 = n3.start_wireguard(IFACE);
    agents.push(agent(n3, &n2.ip.to_string()));
    let out = pinger.wait_with_output().expect("ping output");
    let out = String::from_utf8_lossy(&out.stdout);
    assert_running(&mut agents);
    assert!(
        agents[0]
            .log()
            .contains("resetting WireGuard sessions with 1 Go wesher peers"),
        "node2 never reset its session with node1: {}",
        agents[0].log()
    );
    let gap = longest_gap(&out);
    println!(
        "Go node to ours across a membership event: longest gap {} ms",
        gap.as_millis()
    );
    assert!(
        gap < MAX_GAP,
        "node1's pings to node2 stopped for {gap:?}:\n{out}"
    );
}
