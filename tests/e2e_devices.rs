//! End-to-end test of devices without wesher (`wesher peer add|list|remove`), in network
//! namespaces with wireguard-go: a plain WireGuard peer set up from the printed wg-quick
//! configuration (`wg setconf` with the wg-quick-only keys stripped, address and route by hand,
//! as wg-quick would) reaches a node other than the one it was added on, by overlay address;
//! the device survives that node's restart and is gone everywhere after `peer remove`.

mod beyond_support;
mod common;

use std::fs;
use std::time::Duration;

use beyond_support::{client, start, wait_ping};
use common::netns::{
    assert_running, wait_for, Node, Topology, CLUSTER_KEY, CONVERGE, DEFAULT_IFACE,
};

const PHONE_IFACE: &str = "wgphone";

fn must(node: &Node, program: &str, args: &[&str]) -> String {
    let out = node.exec(program, args);
    assert!(out.success(), "{program} {args:?} in {}: {out}", node.name);
    out.stdout
}

/// The value of `key = value` in the configuration.
fn value<'a>(config: &'a str, key: &str) -> &'a str {
    config
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in\n{config}"))
        .trim()
}

/// Sets the phone up from the configuration, as wg-quick would: `wg setconf` takes all but
/// `Address`; the address and the AllowedIPs routes go on by hand.
fn set_up_phone(phone: &Node, config: &str) {
    let conf = phone.dir().join("phone.conf");
    let stripped: String = config
        .lines()
        .filter(|l| !l.starts_with("Address"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&conf, stripped).unwrap();
    must(
        phone,
        "wg",
        &["setconf", PHONE_IFACE, &conf.display().to_string()],
    );
    must(
        phone,
        "ip",
        &["addr", "add", value(config, "Address"), "dev", PHONE_IFACE],
    );
    must(phone, "ip", &["link", "set", PHONE_IFACE, "up"]);
    for net in value(config, "AllowedIPs").split(", ") {
        must(phone, "ip", &["route", "replace", net, "dev", PHONE_IFACE]);
    }
}

#[test]
fn a_plain_wireguard_peer_reaches_the_mesh_through_one_node() {
    let Some(topo) = Topology::new(3) else { return };
    let (n1, n2, phone) = (topo.node(1), topo.node(2), topo.node(3));
    let mut wg1 = n1.start_wireguard(DEFAULT_IFACE);
    let _wg2 = n2.start_wireguard(DEFAULT_IFACE);
    let _phone_wg = phone.start_wireguard(PHONE_IFACE);
    // node1 forwards between the phone and the mesh.
    must(n1, "sh", &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    let seed = n1.ip.to_string();
    let mut agents = vec![
        start(n1, CLUSTER_KEY, None, &[]),
        start(n2, CLUSTER_KEY, Some(&seed), &[]),
    ];
    wait_ping(n2, "node1", &mut agents);

    let added = client(n1, &["peer", "add", "phone"]);
    assert!(added.success(), "{added}");
    let config = added.stdout.clone();
    let address = value(&config, "Address")
        .trim_end_matches("/32")
        .to_string();
    assert!(value(&config, "PrivateKey").len() == 44, "{config}");
    assert_eq!(value(&config, "Endpoint"), format!("{}:51820", n1.ip));
    assert_eq!(value(&config, "AllowedIPs"), "10.0.0.0/8");
    assert_eq!(value(&config, "PersistentKeepalive"), "25");
    assert_eq!(
        value(&config, "PublicKey"),
        n1.wg(DEFAULT_IFACE).unwrap().public_key
    );
    let listed = must(n1, common::netns::WESHER, &["peer", "list"]);
    assert!(listed.starts_with(&format!("phone {address} ")), "{listed}");
    // The same name again, or a member's name, is refused.
    for name in ["phone", "node2"] {
        let again = client(n1, &["peer", "add", name]);
        assert!(
            !again.success() && again.stderr.contains("already"),
            "{again}"
        );
    }

    // The state keeps the device's public key, never its private key.
    let private = value(&config, "PrivateKey").to_string();
    wait_for("the device in node1's state file", CONVERGE, || {
        let state = fs::read_to_string(n1.state_file(DEFAULT_IFACE)).unwrap_or_default();
        assert!(!state.contains(&private), "{state}");
        state
            .contains(r#""Devices":[{"Name":"phone""#)
            .then_some(())
            .ok_or(state)
    });
    // A key and an address given by hand, and the QR code (by qrencode, which must be installed).
    if common::prerequisites(&["qrencode"]) {
        let key = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";
        let laptop = client(
            n1,
            &[
                "peer",
                "add",
                "laptop",
                "--public-key",
                key,
                "--overlay-addr",
                "10.200.0.9",
                "--qr",
            ],
        );
        assert!(laptop.success(), "{laptop}");
        assert!(!laptop.stdout.contains("PrivateKey"), "{laptop}");
        assert!(
            laptop.stdout.contains("Address = 10.200.0.9/32\n"),
            "{laptop}"
        );
        assert!(laptop.stdout.contains('█'), "no QR code: {laptop}");
        let removed = client(n1, &["peer", "remove", "laptop"]);
        assert!(removed.success(), "{removed}");
    }

    set_up_phone(phone, &config);
    let overlay2 = n2.overlay_addr(DEFAULT_IFACE).unwrap();
    wait_for("the phone to ping node2 through node1", CONVERGE, || {
        assert_running(&mut agents);
        phone.ping(&overlay2)
    });
    wait_for("node2 to ping the phone", CONVERGE, || n2.ping(&address));

    // node1 restarts from its state file: the device, and node1's WireGuard key, stay.
    let mut old = agents.remove(0);
    assert!(old.terminate(Duration::from_secs(20)).is_some());
    drop(old);
    // wesher removed the link at its exit, which ends wireguard-go.
    wg1.wait_exit(Duration::from_secs(20));
    wg1 = n1.start_wireguard(DEFAULT_IFACE);
    let n2_seed = n2.ip.to_string();
    agents.insert(0, start(n1, CLUSTER_KEY, Some(&n2_seed), &[]));
    wait_for(
        "the phone to ping node2 after node1's restart",
        CONVERGE,
        || {
            assert_running(&mut agents);
            phone.ping(&overlay2)
        },
    );
    let listed = must(n1, common::netns::WESHER, &["peer", "list"]);
    assert!(listed.starts_with(&format!("phone {address} ")), "{listed}");

    let removed = client(n1, &["peer", "remove", "phone"]);
    assert!(removed.success(), "{removed}");
    let phone_key = must(phone, "wg", &["show", PHONE_IFACE, "public-key"])
        .trim()
        .to_string();
    for node in [n1, n2] {
        wait_for(
            format!("the phone gone from {}", node.name),
            CONVERGE,
            || {
                assert_running(&mut agents);
                let dump = node.wg(DEFAULT_IFACE)?;
                let held = dump.peers.iter().any(|p| {
                    p.public_key == phone_key
                        || p.allowed_ips.iter().any(|a| a == &format!("{address}/32"))
                });
                let routes = node.routes(DEFAULT_IFACE)?;
                if held || routes.iter().any(|r| r.starts_with(&address)) {
                    Err(format!("still there: {dump:?} {routes:?}"))
                } else {
                    Ok(())
                }
            },
        );
    }
    assert!(phone.ping(&overlay2).is_err());
    drop(agents);
    drop(wg1);
}
