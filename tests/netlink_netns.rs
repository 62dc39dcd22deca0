//! rtnetlink for real, each test inside a network namespace of its own; results are
//! checked with our own list functions and with iproute2's JSON output.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use common::{prerequisites, Netns};
use miniserde::json::{self, Value};
use wesher::netlink::Netlink;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn entries(text: &str) -> Vec<Value> {
    match json::from_str::<Value>(text).expect("ip -j printed bad JSON") {
        Value::Array(items) => items.into_iter().collect(),
        other => panic!("expected a JSON array, got {other:?}"),
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(map) => map.get(key),
        _ => None,
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    match field(v, key)? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn number(v: &Value, key: &str) -> Option<u64> {
    match field(v, key)? {
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// `local/prefixlen` of every address `ip` shows on the device.
fn ip_addresses(ns: &Netns, dev: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for link in entries(&ns.run(&["ip", "-j", "addr", "show", "dev", dev])) {
        if let Some(Value::Array(infos)) = field(&link, "addr_info") {
            for info in infos.iter() {
                let local = text(info, "local").unwrap();
                let len = number(info, "prefixlen").unwrap();
                out.insert(format!("{local}/{len}"));
            }
        }
    }
    out
}

/// Destinations (`a.b.c.d` for host routes, as ip prints them) of routes through the
/// device that the kernel did not add by itself.
fn ip_routes(ns: &Netns, dev: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for family in ["-4", "-6"] {
        for route in entries(&ns.run(&["ip", family, "-j", "route", "show", "dev", dev])) {
            if text(&route, "protocol").as_deref() != Some("kernel") {
                out.insert(text(&route, "dst").unwrap());
            }
        }
    }
    out
}

#[test]
fn links_addresses_and_routes_round_trip() {
    if !prerequisites(&["ip"]) {
        return;
    }
    let ns = Netns::new();
    ns.run(&[
        "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb",
    ]);
    ns.run(&["ip", "link", "set", "vb", "up"]);

    let index = ns.enter(|| {
        let mut nl = Netlink::open().unwrap();
        let link = nl.link("va").unwrap().expect("va exists");
        assert_eq!(link.kind.as_deref(), Some("veth"));
        assert!(!link.up);
        assert_eq!(nl.link_index("va").unwrap(), Some(link.index));
        assert_eq!(nl.link("nosuchlink").unwrap(), None);

        nl.set_mtu_up(link.index, 1420).unwrap();
        let link = nl.link("va").unwrap().unwrap();
        assert_eq!((link.mtu, link.up), (1420, true));
        assert!(nl.links().unwrap().iter().any(|l| l.name == "vb"));
        link.index
    });
    let shown = &entries(&ns.run(&["ip", "-j", "link", "show", "va"]))[0];
    assert_eq!(number(shown, "mtu"), Some(1420));
    assert_eq!(number(shown, "ifindex"), Some(u64::from(index)));

    let addrs = [
        ("10.77.0.1", 24),
        ("10.77.9.9", 32),
        ("fd77::1", 64),
        ("fd77::2", 128),
    ];
    let expected: BTreeSet<String> = addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect();
    ns.enter(|| {
        let mut nl = Netlink::open().unwrap();
        for (a, l) in addrs {
            nl.add_address(index, ip(a), l).unwrap();
            nl.add_address(index, ip(a), l).unwrap(); // again: already there is fine
        }
        let listed = nl.addresses(Some(index)).unwrap();
        let ours: BTreeSet<String> = listed
            .iter()
            .filter(|a| !a.addr.to_string().starts_with("fe80"))
            .map(|a| format!("{}/{}", a.addr, a.prefix_len))
            .collect();
        assert_eq!(ours, expected);
        assert!(listed.iter().all(|a| a.index == index));
        let first_v6 = listed.iter().position(|a| a.addr.is_ipv6()).unwrap();
        assert!(listed[..first_v6].iter().all(|a| a.addr.is_ipv4()));
        assert!(listed[first_v6..].iter().all(|a| a.addr.is_ipv6()));
        assert_eq!(nl.first_address("va").unwrap(), ip("10.77.0.1"));
        let err = nl.add_address(index, ip("10.77.0.1"), 33).unwrap_err();
        assert_eq!(
            err.to_string(),
            "adding address 10.77.0.1/33 to link va: Invalid argument"
        );
    });
    let shown: BTreeSet<String> = ip_addresses(&ns, "va")
        .into_iter()
        .filter(|a| !a.starts_with("fe80"))
        .collect();
    assert_eq!(shown, expected);

    let routes = [
        ("10.88.0.5", 32),
        ("10.90.0.0", 16),
        ("fd88::5", 128),
        ("fd90::", 48),
    ];
    ns.enter(|| {
        let mut nl = Netlink::open().unwrap();
        for (d, l) in routes {
            nl.add_route(index, ip(d), l).unwrap();
            // Exclusive: an existing route is never replaced, not even ours.
            let again = nl.add_route(index, ip(d), l).unwrap_err();
            assert_eq!(again.raw_errno(), Some(libc::EEXIST), "{again}");
        }
        let listed: BTreeSet<(IpAddr, u8)> = nl
            .routes(index)
            .unwrap()
            .iter()
            .map(|r| (r.dst, r.prefix_len))
            .collect();
        let wanted: BTreeSet<(IpAddr, u8)> = routes.iter().map(|(d, l)| (ip(d), *l)).collect();
        assert_eq!(listed, wanted);
    });
    let shown = ip_routes(&ns, "va");
    let wanted: BTreeSet<String> = ["10.88.0.5", "10.90.0.0/16", "fd88::5", "fd90::/48"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(shown, wanted);
    let v4 = entries(&ns.run(&["ip", "-4", "-j", "route", "show", "dev", "va", "10.88.0.5"]));
    assert_eq!(text(&v4[0], "scope").as_deref(), Some("link"));
    assert_eq!(text(&v4[0], "protocol").as_deref(), Some("87"));

    // A route someone else installed is not ours: not listed, not replaced, not removed.
    ns.run(&[
        "ip",
        "route",
        "add",
        "10.91.0.0/16",
        "dev",
        "va",
        "proto",
        "static",
    ]);
    ns.enter(|| {
        let mut nl = Netlink::open().unwrap();
        assert!(!nl
            .routes(index)
            .unwrap()
            .iter()
            .any(|r| r.dst == ip("10.91.0.0")));
        let taken = nl.add_route(index, ip("10.91.0.0"), 16).unwrap_err();
        assert_eq!(taken.raw_errno(), Some(libc::EEXIST), "{taken}");
        nl.del_route(index, ip("10.91.0.0"), 16).unwrap();
    });
    assert!(ip_routes(&ns, "va").contains("10.91.0.0/16"));
    ns.run(&["ip", "route", "del", "10.91.0.0/16", "dev", "va"]);

    ns.enter(|| {
        let mut nl = Netlink::open().unwrap();
        for (d, l) in routes {
            nl.del_route(index, ip(d), l).unwrap();
            nl.del_route(index, ip(d), l).unwrap(); // gone already is fine
        }
        assert_eq!(nl.routes(index).unwrap(), vec![]);
        for (a, l) in addrs {
            nl.del_address(index, ip(a), l).unwrap();
            nl.del_address(index, ip(a), l).unwrap();
        }
        let left = nl.addresses(Some(index)).unwrap();
        assert!(left.iter().all(|a| a.addr.to_string().starts_with("fe80")));
    });
    assert_eq!(ip_routes(&ns, "va"), BTreeSet::new());
    assert!(ip_addresses(&ns, "va")
        .iter()
        .all(|a| a.starts_with("fe80")));

    ns.enter(|| {
        let mut nl = Netlink::open().unwrap();
        nl.delete_link(index).unwrap();
        assert_eq!(nl.link("va").unwrap(), None);
        assert_eq!(nl.link("vb").unwrap(), None); // a veth pair goes together
                                                  // Gone already (its daemon stopped with us, say) is what was asked.
        nl.delete_link(index).unwrap();
    });
    let out = ns.output(&["ip", "link", "show", "va"]);
    assert!(!out.status.success());
}

#[test]
fn creating_wireguard_link_works_or_explains_the_missing_module() {
    if !prerequisites(&["ip"]) {
        return;
    }
    let ns = Netns::new();
    ns.enter(|| {
        let mut nl = Netlink::open().unwrap();
        match nl.create_wireguard("wgtest0") {
            Ok(link) => {
                // A kernel with WireGuard (the VM): the link is real and deletable.
                assert_eq!(link.kind.as_deref(), Some("wireguard"));
                nl.delete_link(link.index).unwrap();
            }
            Err(e) => {
                assert_eq!(e.raw_errno(), Some(libc::EOPNOTSUPP));
                // "Operation not supported" with glibc, "Not supported" with musl.
                let text = e.to_string();
                assert!(text.starts_with("creating link wgtest0: "), "{text}");
                assert!(
                    text.ends_with(
                        "upported (the kernel has no WireGuard module; install wireguard-go \
                         or load the module)"
                    ),
                    "{text}"
                );
                assert_eq!(nl.link("wgtest0").unwrap(), None);
            }
        }
    });
}

#[test]
fn creating_wireguard_link_reuses_an_existing_one() {
    if !prerequisites(&["ip"]) {
        return;
    }
    let ns = Netns::new();
    // A TUN device stands for the link wireguard-go creates.
    ns.run(&["ip", "tuntap", "add", "dev", "wgexist", "mode", "tun"]);
    ns.enter(|| {
        let mut nl = Netlink::open().unwrap();
        let link = nl.create_wireguard("wgexist").unwrap();
        assert_eq!(link.kind.as_deref(), Some("tun"));
        assert_eq!(nl.link_index("wgexist").unwrap(), Some(link.index));
    });
}

#[test]
fn bind_autodetection_prefers_public_then_advertises_private() {
    if !prerequisites(&["ip"]) {
        return;
    }
    let ns = Netns::new();
    ns.run(&[
        "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1",
    ]);
    ns.run(&[
        "ip", "link", "add", "side0", "type", "veth", "peer", "name", "side1",
    ]);
    ns.run(&[
        "ip", "link", "add", "bare0", "type", "veth", "peer", "name", "bare1",
    ]);
    for dev in ["up0", "up1", "side0", "side1"] {
        ns.run(&["ip", "link", "set", dev, "up"]);
    }
    ns.run(&["ip", "addr", "add", "192.168.50.2/24", "dev", "up0"]);
    ns.run(&[
        "ip",
        "route",
        "add",
        "default",
        "via",
        "192.168.50.1",
        "dev",
        "up0",
    ]);
    ns.enter(|| {
        let mut nl = Netlink::open().unwrap();
        let got = nl.detect_bind(None).unwrap();
        assert_eq!(got.bind, ip("0.0.0.0"));
        assert_eq!(got.advertise, ip("192.168.50.2"));
        assert_eq!(nl.first_address("up0").unwrap(), ip("192.168.50.2"));
        // Go's rule: the first address, even an IPv6 link-local one.
        assert!(nl
            .first_address("side1")
            .unwrap()
            .to_string()
            .starts_with("fe80:"));
        let err = nl.first_address("bare0").unwrap_err().to_string();
        assert_eq!(
            err,
            "finding the address of interface bare0: the interface has no address"
        );
        let err = nl.first_address("nosuch").unwrap_err().to_string();
        assert_eq!(
            err,
            "finding the address of interface nosuch: no such interface"
        );
    });
    // A public address on another interface is taken over the private one...
    ns.run(&["ip", "addr", "add", "11.2.3.4/24", "dev", "side0"]);
    ns.enter(|| {
        let got = Netlink::open().unwrap().detect_bind(None).unwrap();
        assert_eq!((got.bind, got.advertise), (ip("11.2.3.4"), ip("11.2.3.4")));
    });
    // ...and one on the default-route interface beats it.
    ns.run(&["ip", "addr", "add", "12.5.6.7/24", "dev", "up0"]);
    ns.enter(|| {
        let got = Netlink::open().unwrap().detect_bind(None).unwrap();
        assert_eq!(got.bind, ip("12.5.6.7"));
    });
    // Addresses of a link that is down are never used.
    ns.run(&["ip", "link", "set", "up0", "down"]);
    ns.enter(|| {
        let got = Netlink::open().unwrap().detect_bind(None).unwrap();
        assert_eq!(got.bind, ip("11.2.3.4"));
    });
}
