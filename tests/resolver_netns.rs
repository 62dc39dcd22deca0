//! The resolver's IO part for real: its sockets on a mio `Poll`, against a hand-driven DNS
//! server on 127.0.0.1:53 inside a network namespace of the test's own, with a dead nameserver
//! (127.0.0.2: nothing listens) listed first. The server crafts replies, so spoofed and
//! mismatched ones can be sent between the good ones.

mod common;

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{prerequisites, Netns};
use mio::{Events, Poll, Token};
use wesher::config::JoinAddr;
use wesher::resolver::{Answer, Resolver};

const TOKEN: Token = Token(5);

fn targets(list: &[&str]) -> Vec<JoinAddr> {
    list.iter().map(|t| t.parse().unwrap()).collect()
}

/// Runs the resolver's side of the loop until an answer comes or `limit` passes.
fn wait_answer(poll: &mut Poll, r: &mut Resolver, limit: Duration) -> Answer {
    let mut events = Events::with_capacity(8);
    let end = Instant::now() + limit;
    loop {
        if let Some(a) = r.poll() {
            return a;
        }
        let now = Instant::now();
        assert!(now < end, "no answer within {limit:?}");
        let wake = r.next_deadline().map_or(end, |d| d.min(end));
        poll.poll(&mut events, Some(wake.saturating_duration_since(now)))
            .unwrap();
        let now = Instant::now();
        if events.iter().any(|e| r.owns(e.token())) {
            r.handle_readable(poll.registry(), now);
        }
        r.handle_timeout(poll.registry(), now);
    }
}

fn name_and_type(q: &[u8]) -> (String, u16) {
    let mut labels = Vec::new();
    let mut at = 12;
    while q[at] != 0 {
        let len = q[at] as usize;
        labels.push(String::from_utf8_lossy(&q[at + 1..at + 1 + len]).into_owned());
        at += 1 + len;
    }
    (labels.join("."), u16::from_be_bytes([q[at + 1], q[at + 2]]))
}

/// The reply to `q`: `rcode`, and an A record (if `a` and `q` asks for A).
fn reply(q: &[u8], rcode: u8, a: Option<[u8; 4]>) -> Vec<u8> {
    let mut r = q.to_vec();
    r[2] |= 0x80;
    r[3] = 0x80 | rcode;
    if let (Some(a), (_, 1)) = (a, name_and_type(q)) {
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&a);
    }
    r
}

/// The server: seed.lan gets spoofed and mismatched replies before the good one, seed2 and
/// seed2.lan NXDOMAIN, anything else no reply. Returns what it was asked, in order.
fn serve(server: &UdpSocket, spoofer: &UdpSocket, stop: &AtomicBool) -> Vec<(String, u16)> {
    server
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut asked = Vec::new();
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = server.recv_from(&mut buf) else {
            continue;
        };
        let q = &buf[..n];
        let (name, qtype) = name_and_type(q);
        match name.as_str() {
            "seed.lan" => {
                // From the wrong port, with the wrong ID, for another name: all ignored.
                spoofer
                    .send_to(&reply(q, 0, Some([6, 6, 6, 6])), from)
                    .unwrap();
                let mut wrong_id = reply(q, 0, Some([6, 6, 6, 7]));
                wrong_id[0] ^= 0xff;
                server.send_to(&wrong_id, from).unwrap();
                let mut other = reply(q, 0, Some([6, 6, 6, 8]));
                other[13] = b'x';
                server.send_to(&other, from).unwrap();
                server
                    .send_to(&reply(q, 0, Some([10, 0, 0, 7])), from)
                    .unwrap();
            }
            "seed2.lan" | "seed2" => {
                server.send_to(&reply(q, 3, None), from).unwrap();
            }
            _ => {}
        }
        asked.push((name, qtype));
    }
    asked
}

fn asked(list: &[(&str, u16)]) -> Vec<(String, u16)> {
    list.iter().map(|(n, t)| (n.to_string(), *t)).collect()
}

#[test]
fn lookups_through_real_sockets_with_a_dead_server_and_spoofed_replies() {
    if !prerequisites(&["ip"]) {
        return;
    }
    let ns = Netns::new();
    let dir = std::env::temp_dir().join(common::unique("wesher-resolver"));
    fs::create_dir_all(&dir).unwrap();
    let (conf, hosts) = (dir.join("resolv.conf"), dir.join("hosts"));
    fs::write(
        &conf,
        "nameserver 127.0.0.2\nnameserver 127.0.0.1\nsearch lan\noptions timeout:1 attempts:2\n",
    )
    .unwrap();
    fs::write(&hosts, "192.0.2.5 fromhosts # a comment\n").unwrap();
    let log = ns.enter(|| {
        let server = UdpSocket::bind("127.0.0.1:53").unwrap();
        let spoofer = UdpSocket::bind("127.0.0.1:5353").unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            // A thread started here is in the namespace too.
            let served = s.spawn(|| serve(&server, &spoofer, &stop));
            let mut poll = Poll::new().unwrap();
            let mut r = Resolver::with_files(TOKEN, &conf, &hosts);
            let sa = |a: &str| a.parse::<SocketAddr>().unwrap();

            // Literals and /etc/hosts names are answered at once, without a query.
            let now = r
                .lookup(
                    poll.registry(),
                    Instant::now(),
                    &targets(&["192.0.2.1", "FromHosts:8000"]),
                    7946,
                )
                .expect("answered at once");
            assert_eq!(now.addrs, [sa("192.0.2.1:7946"), sa("192.0.2.5:8000")]);
            assert!(now.errors.is_empty());

            let t = targets(&["192.0.2.1", "seed:8000"]);
            assert!(r
                .lookup(poll.registry(), Instant::now(), &t, 7946)
                .is_none());
            let a = wait_answer(&mut poll, &mut r, Duration::from_secs(5));
            assert!(a.errors.is_empty(), "{:?}", a.errors);
            assert_eq!(a.addrs, [sa("192.0.2.1:7946"), sa("10.0.0.7:8000")]);

            // NXDOMAIN for seed2.lan, then for seed2: no such host, named.
            assert!(r
                .lookup(poll.registry(), Instant::now(), &targets(&["seed2"]), 7946)
                .is_none());
            let a = wait_answer(&mut poll, &mut r, Duration::from_secs(5));
            assert_eq!(a.errors, ["seed2: no such host"]);
            assert!(a.addrs.is_empty());

            // A server that reads and never answers: both attempts of 1 s, then the message.
            let start = Instant::now();
            assert!(r
                .lookup(poll.registry(), start, &targets(&["silent"]), 7946)
                .is_none());
            let a = wait_answer(&mut poll, &mut r, Duration::from_secs(10));
            assert_eq!(a.errors, ["silent: no nameserver answered within 2 s"]);
            assert!(start.elapsed() >= Duration::from_secs(2));
            assert_eq!(r.next_deadline(), None);

            // Two lookups out at once: one answer each, whichever ends first.
            assert!(r
                .lookup(poll.registry(), Instant::now(), &targets(&["seed2"]), 7946)
                .is_none());
            assert!(r
                .lookup(poll.registry(), Instant::now(), &targets(&["seed:9"]), 7946)
                .is_none());
            let mut both = [
                wait_answer(&mut poll, &mut r, Duration::from_secs(5)),
                wait_answer(&mut poll, &mut r, Duration::from_secs(5)),
            ];
            both.sort_by_key(|a| a.errors.len());
            assert_eq!(
                (both[0].addrs.as_slice(), both[0].errors.len()),
                (&[sa("10.0.0.7:9")][..], 0)
            );
            assert_eq!(
                (both[1].addrs.len(), &both[1].errors[..]),
                (0, &["seed2: no such host".to_string()][..])
            );
            assert!(r.poll().is_none());
            stop.store(true, Ordering::Relaxed);
            served.join().unwrap()
        })
    });
    fs::remove_dir_all(&dir).unwrap();
    let mut log = log;
    // A and AAAA go out together, in either order: compare per candidate, sorted; the two
    // lookups at once, in any order.
    assert_eq!(log.len(), 16, "{log:?}");
    let mut overlapping = log.split_off(10);
    overlapping.sort();
    // The first lookup's candidate, then the second's two (the search list, then the name).
    let two_lookups = [
        ("seed.lan", 1),
        ("seed.lan", 28),
        ("seed2.lan", 1),
        ("seed2.lan", 28),
        ("seed2", 1),
        ("seed2", 28),
    ];
    let mut expected = asked(&two_lookups);
    expected.sort();
    assert_eq!(overlapping, expected);
    for chunk in log.chunks_mut(2) {
        chunk.sort();
    }
    assert_eq!(
        log,
        asked(
            &[
                &two_lookups[..],
                &[
                    ("silent.lan", 1),
                    ("silent.lan", 28),
                    ("silent.lan", 1),
                    ("silent.lan", 28)
                ],
            ]
            .concat()
        )
    );
}
