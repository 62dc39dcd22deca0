//! The kernel backend (generic netlink) on real kernel WireGuard links, in a private
//! network namespace made with unshare(2), so that only `wg` is needed. Without the module this skips, unless WESHER_EXPECT_KERNEL_WG=1 (set
//! by the VM harness), which makes the missing module a failure.

mod common;

use std::net::{IpAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_device, prerequisites};
use wesher::netlink::Netlink;
use wesher::wireguard::{Backend, DeviceConfig, PeerChange, PeerConfig, PrivateKey};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Runs `f` on a thread in a brand-new network namespace (gone when the thread ends).
fn in_private_netns<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// `wg show IF dump`, run from the calling thread so it sees the same namespace.
fn wg_dump(ifname: &str) -> String {
    let out = Command::new("wg")
        .args(["show", ifname, "dump"])
        .output()
        .expect("running wg");
    assert!(
        out.status.success(),
        "wg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn expect_kernel() -> bool {
    std::env::var("WESHER_EXPECT_KERNEL_WG").as_deref() == Ok("1")
}

/// Creates `ifname`, or returns `None` (after checking the errors explain why) when
/// this kernel has no WireGuard and nobody expects one.
fn wireguard_link(nl: &mut Netlink, ifname: &str) -> Option<u32> {
    match nl.create_wireguard(ifname) {
        Ok(link) => {
            assert_eq!(link.kind.as_deref(), Some("wireguard"));
            Some(link.index)
        }
        Err(e) if e.raw_errno() == Some(libc::EOPNOTSUPP) && !expect_kernel() => {
            let open = Backend::open(ifname)
                .err()
                .expect("no kernel WireGuard, no backend");
            assert!(open.to_string().contains("no wireguard module"), "{open}");
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn kernel_backend_sets_device_and_changes_peers_one_by_one() {
    if !prerequisites(&["wg"]) {
        return;
    }
    in_private_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let Some(index) = wireguard_link(&mut nl, "wgk0") else {
            return;
        };
        assert_eq!(nl.create_wireguard("wgk0").unwrap().index, index); // EEXIST: reused
        nl.set_mtu_up(index, 1420).unwrap();
        nl.add_address(index, ip("10.45.0.1"), 32).unwrap();
        nl.add_route(index, ip("10.45.0.2"), 32).unwrap();
        nl.add_route(index, ip("fd45::2"), 128).unwrap();
        assert_eq!(nl.routes(index).unwrap().len(), 2);

        let mut wg = Backend::open("wgk0").unwrap();
        assert!(!wg.is_userspace());
        let private = PrivateKey::generate().unwrap();
        let port = 51820;
        wg.set_device(&DeviceConfig {
            private_key: &private,
            listen_port: port,
        })
        .unwrap();
        assert_device(&wg_dump("wgk0"), &private, port, &[], &wg.device().unwrap());

        let mut a = PeerConfig {
            public_key: PrivateKey::generate().unwrap().public_key(),
            endpoint: Some("192.0.2.10:51820".parse().unwrap()),
            allowed_ips: vec![(ip("10.45.0.2"), 32)],
            persistent_keepalive: None,
        };
        let b = PeerConfig {
            public_key: PrivateKey::generate().unwrap().public_key(),
            endpoint: Some("[2001:db8::2]:51820".parse().unwrap()),
            allowed_ips: vec![(ip("10.45.0.3"), 32), (ip("fd45::3"), 128)],
            persistent_keepalive: Some(25),
        };
        wg.apply(&[PeerChange::Upsert(a.clone()), PeerChange::Upsert(b.clone())])
            .unwrap();
        let both = [a.clone(), b.clone()];
        assert_device(
            &wg_dump("wgk0"),
            &private,
            port,
            &both,
            &wg.device().unwrap(),
        );

        a.endpoint = Some("192.0.2.11:51821".parse().unwrap());
        a.allowed_ips = vec![(ip("10.45.0.2"), 32), (ip("10.46.0.0"), 16)];
        wg.apply(&[PeerChange::Upsert(a.clone())]).unwrap();
        let both = [a.clone(), b.clone()];
        assert_device(
            &wg_dump("wgk0"),
            &private,
            port,
            &both,
            &wg.device().unwrap(),
        );

        wg.apply(&[PeerChange::Remove(b.public_key)]).unwrap();
        assert_device(
            &wg_dump("wgk0"),
            &private,
            port,
            &[a.clone()],
            &wg.device().unwrap(),
        );

        // Enough peers to need several SET_DEVICE messages and a multi-part dump.
        let many: Vec<PeerConfig> = (0..300u32)
            .map(|i| PeerConfig {
                public_key: PrivateKey::generate().unwrap().public_key(),
                endpoint: Some(
                    format!("192.0.2.{}:{}", i % 250 + 1, 1000 + i)
                        .parse()
                        .unwrap(),
                ),
                allowed_ips: (0..4u32)
                    .map(|j| {
                        (
                            IpAddr::from([10, 60 + j as u8, (i / 256) as u8, i as u8]),
                            32,
                        )
                    })
                    .collect(),
                persistent_keepalive: None,
            })
            .collect();
        let upserts: Vec<PeerChange> = many.iter().cloned().map(PeerChange::Upsert).collect();
        wg.apply(&upserts).unwrap();
        let mut all = many.clone();
        all.push(a.clone());
        assert_device(
            &wg_dump("wgk0"),
            &private,
            port,
            &all,
            &wg.device().unwrap(),
        );

        nl.delete_link(index).unwrap();
        assert_eq!(nl.link("wgk0").unwrap(), None);
    });
}

#[test]
fn two_kernel_links_complete_a_handshake() {
    if !prerequisites(&["wg"]) {
        return;
    }
    in_private_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let lo = nl.link_index("lo").unwrap().unwrap();
        nl.set_mtu_up(lo, 65536).unwrap();
        let Some(one) = wireguard_link(&mut nl, "wgh1") else {
            return;
        };
        let two = wireguard_link(&mut nl, "wgh2").unwrap();
        let keys = [
            PrivateKey::generate().unwrap(),
            PrivateKey::generate().unwrap(),
        ];
        let ports = [51831, 51832];
        for (i, (name, index)) in [("wgh1", one), ("wgh2", two)].into_iter().enumerate() {
            let other = 1 - i;
            nl.set_mtu_up(index, 1420).unwrap();
            let mut wg = Backend::open(name).unwrap();
            wg.set_device(&DeviceConfig {
                private_key: &keys[i],
                listen_port: ports[i],
            })
            .unwrap();
            wg.apply(&[PeerChange::Upsert(PeerConfig {
                public_key: keys[other].public_key(),
                endpoint: Some(format!("127.0.0.1:{}", ports[other]).parse().unwrap()),
                allowed_ips: vec![(ip(&format!("10.47.{other}.0")), 24)],
                persistent_keepalive: None,
            })])
            .unwrap();
        }
        // Traffic for wgh2's allowed IPs through wgh1 makes wgh1 start a handshake.
        nl.add_route(one, ip("10.47.1.0"), 24).unwrap();
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut wg = Backend::open("wgh1").unwrap();
        loop {
            udp.send_to(b"hello", "10.47.1.9:9").unwrap();
            let peers = wg.peers().unwrap();
            if peers[0].last_handshake.is_some() {
                assert!(peers[0].rx_bytes > 0 && peers[0].tx_bytes > 0);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no handshake between wgh1 and wgh2"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // The responder records the handshake only when the first data packet reaches it, which
        // can lag the initiator's view: keep sending until wgh2 sees it too.
        let mut wg2 = Backend::open("wgh2").unwrap();
        let back = loop {
            let back = wg2.peers().unwrap();
            if back[0].last_handshake.is_some() {
                break back;
            }
            assert!(
                Instant::now() < deadline,
                "wgh2 never recorded the handshake"
            );
            udp.send_to(b"hello", "10.47.1.9:9").unwrap();
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(back[0].public_key, keys[0].public_key());
        assert_eq!(
            back[0].endpoint,
            Some(format!("127.0.0.1:{}", ports[0]).parse().unwrap())
        );
    });
}
