//! The SWIM core driven by hand with real codec bytes: protocol rules, serving streams, and
//! hostile or stale input (dropped and counted, never a panic).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wesher::membership::io::{Input, StreamId, Transmit};
use wesher::membership::message::*;
use wesher::membership::wire::{self, Nonces, PacketOpts};
use wesher::membership::{Config, Event, Keyring, MemberState, Membership, Timing};

const KEY: [u8; 32] = [9; 32];

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], 7946))
}

fn node(now: Instant) -> Membership {
    let config = Config {
        name: "me".into(),
        advertise: addr(1),
        keyring: Keyring::new(KEY.into()),
        timing: Timing::lan(),
        meta: b"my-meta".to_vec(),
    };
    Membership::new(config, now, 42)
}

fn packet(msgs: &[Message]) -> Vec<u8> {
    let encoded: Vec<Vec<u8>> = msgs.iter().map(wire::encode_message).collect();
    let opts = PacketOpts {
        crc: true,
        compress: true,
    };
    wire::seal_packet(
        &encoded,
        opts,
        &Keyring::new(KEY.into()),
        &mut Nonces::new(1),
    )
}

fn feed(m: &mut Membership, now: Instant, from: SocketAddr, msgs: &[Message]) {
    let bytes = packet(msgs);
    m.handle_input(now, Input::Datagram { from, bytes });
}

fn alive(name: &str, inc: u32, last: u8, meta: &[u8]) -> Message {
    Message::Alive(Alive {
        incarnation: inc,
        node: name.into(),
        addr: addr(last).ip(),
        port: 7946,
        meta: meta.to_vec(),
        vsn: WESHER_VSN,
    })
}

/// Every message the core sent in datagrams (opened with the shared key).
fn sent_messages(m: &mut Membership) -> Vec<(SocketAddr, Message)> {
    let ring = Keyring::new(KEY.into());
    let mut out = Vec::new();
    while let Some(t) = m.poll_transmit() {
        if let Transmit::Datagram { to, bytes } = t {
            for msg in wire::open_packet(&bytes, &ring).expect("our own packet opens") {
                out.push((to, msg));
            }
        }
    }
    out
}

fn events(m: &mut Membership) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

#[test]
fn alive_suspect_dead_rules_and_events() {
    let now = Instant::now();
    let mut m = node(now);
    feed(&mut m, now, addr(2), &[alive("peer", 1, 2, b"a")]);
    assert!(matches!(&events(&mut m)[..], [Event::Join(p)] if p.name == "peer" && p.meta == b"a"));
    // Same incarnation again: nothing. Newer with new meta: Update.
    feed(&mut m, now, addr(2), &[alive("peer", 1, 2, b"b")]);
    assert!(events(&mut m).is_empty());
    feed(&mut m, now, addr(2), &[alive("peer", 2, 2, b"b")]);
    assert!(matches!(&events(&mut m)[..], [Event::Update(p)] if p.meta == b"b"));
    // Older suspect is ignored, current one marks it suspect (no event).
    let suspect = |inc| {
        Message::Suspect(Suspect {
            incarnation: inc,
            node: "peer".into(),
            from: "x".into(),
        })
    };
    feed(&mut m, now, addr(3), &[suspect(1)]);
    assert_eq!(m.member("peer").map(|p| p.state), Some(MemberState::Alive));
    feed(&mut m, now, addr(3), &[suspect(2)]);
    assert_eq!(
        m.member("peer").map(|p| p.state),
        Some(MemberState::Suspect)
    );
    assert!(events(&mut m).is_empty());
    // The suspicion times out (LAN, 2 members: 4 x 1 s minimum, k = 0) into a Leave.
    let later = now + Duration::from_secs(5);
    m.handle_timeout(later);
    assert!(matches!(&events(&mut m)[..], [Event::Leave(p)] if p.state == MemberState::Dead));
    // Coming back with a newer incarnation is a Join again.
    feed(&mut m, later, addr(2), &[alive("peer", 3, 2, b"b")]);
    assert!(matches!(&events(&mut m)[..], [Event::Join(p)] if p.incarnation == 3));
    // A dead message from the node itself is a graceful leave.
    let dead = Message::Dead(Dead {
        incarnation: 3,
        node: "peer".into(),
        from: "peer".into(),
    });
    feed(&mut m, later, addr(2), &[dead]);
    assert!(matches!(&events(&mut m)[..], [Event::Leave(p)] if p.state == MemberState::Left));
    // Never an event about ourselves.
    feed(&mut m, later, addr(2), &[alive("me", 1, 1, b"my-meta")]);
    assert!(events(&mut m).is_empty());
}

#[test]
fn suspect_and_dead_about_us_are_refuted_with_a_higher_incarnation() {
    let now = Instant::now();
    let mut m = node(now);
    feed(&mut m, now, addr(2), &[alive("peer", 1, 2, b"")]);
    let before = m.local().incarnation;
    let accuse = Message::Suspect(Suspect {
        incarnation: before + 5,
        node: "me".into(),
        from: "peer".into(),
    });
    feed(&mut m, now, addr(2), &[accuse]);
    let refuted = m.local().incarnation;
    assert_eq!(refuted, before + 6);
    assert_eq!(m.local().state, MemberState::Alive);
    let dead = Message::Dead(Dead {
        incarnation: refuted,
        node: "me".into(),
        from: "peer".into(),
    });
    feed(&mut m, now, addr(2), &[dead]);
    assert!(m.local().incarnation > refuted);
    assert_eq!(m.local().state, MemberState::Alive);
    // An alive about us with our incarnation but other meta (a previous life) is refuted too.
    let inc = m.local().incarnation;
    feed(&mut m, now, addr(2), &[alive("me", inc, 1, b"old-life")]);
    assert!(m.local().incarnation > inc);
    assert_eq!(m.local().meta, b"my-meta");
    // Our latest alive is what gets piggybacked on the next ack.
    let ping = Message::Ping(Ping {
        seq_no: 7,
        node: "me".into(),
        source_addr: None,
        source_port: None,
        source_node: None,
    });
    feed(&mut m, now, addr(2), &[ping]);
    let sent = sent_messages(&mut m);
    assert!(sent
        .iter()
        .any(|(to, msg)| *to == addr(2) && matches!(msg, Message::Ack(a) if a.seq_no == 7)));
    let latest = m.local().incarnation;
    assert!(sent.iter().any(
        |(_, msg)| matches!(msg, Message::Alive(a) if a.node == "me" && a.incarnation == latest)
    ));
}

#[test]
fn indirect_ping_is_relayed_and_nacked_on_timeout() {
    let now = Instant::now();
    let mut m = node(now);
    let ind = Message::IndirectPing(IndirectPing {
        seq_no: 99,
        target: addr(5).ip(),
        port: 7946,
        node: "target".into(),
        nack: true,
        source_addr: Some(addr(2).ip()),
        source_port: Some(7946),
        source_node: Some("asker".into()),
    });
    feed(&mut m, now, addr(2), std::slice::from_ref(&ind));
    let sent = sent_messages(&mut m);
    let seq = sent
        .iter()
        .find_map(|(to, msg)| match msg {
            Message::Ping(p) if *to == addr(5) && p.node == "target" => Some(p.seq_no),
            _ => None,
        })
        .expect("pinged the target");
    // The target answers: the ack is forwarded with the asker's sequence number.
    feed(
        &mut m,
        now,
        addr(5),
        &[Message::Ack(AckResp {
            seq_no: seq,
            payload: None,
        })],
    );
    let sent = sent_messages(&mut m);
    assert!(sent
        .iter()
        .any(|(to, msg)| *to == addr(2) && matches!(msg, Message::Ack(a) if a.seq_no == 99)));
    // Second request, no answer: a nack after the probe timeout.
    feed(&mut m, now, addr(2), &[ind]);
    sent_messages(&mut m);
    m.handle_timeout(now + Duration::from_millis(600));
    let sent = sent_messages(&mut m);
    assert!(sent
        .iter()
        .any(|(to, msg)| *to == addr(2) && matches!(msg, Message::Nack(n) if n.seq_no == 99)));
}

#[test]
fn hostile_and_stale_input_is_dropped_and_counted() {
    let now = Instant::now();
    let mut m = node(now);
    for junk in [&b""[..], b"\x01", b"\x00\x00\x00\x00", &[0xff; 200]] {
        m.handle_input(
            now,
            Input::Datagram {
                from: addr(9),
                bytes: junk.to_vec(),
            },
        );
    }
    // Sealed with another key.
    let other = wire::seal_packet(
        &[wire::encode_message(&alive("evil", 1, 9, b""))],
        PacketOpts::default(),
        &Keyring::new([1; 32].into()),
        &mut Nonces::new(3),
    );
    m.handle_input(
        now,
        Input::Datagram {
            from: addr(9),
            bytes: other,
        },
    );
    let codec_drops: u64 = m.stats().drops_total();
    assert_eq!(codec_drops, 5, "{:?}", m.stats().drops);
    assert!(m.member("evil").is_none());
    let ping_other = Message::Ping(Ping {
        seq_no: 1,
        node: "someone-else".into(),
        source_addr: None,
        source_port: None,
        source_node: None,
    });
    let suspect_unknown = Message::Suspect(Suspect {
        incarnation: 1,
        node: "ghost".into(),
        from: "x".into(),
    });
    let stale_ack = Message::Ack(AckResp {
        seq_no: 12345,
        payload: None,
    });
    let bad_vsn = Message::Alive(Alive {
        vsn: [3, 1, 2, 0, 0, 0],
        ..match alive("weird", 1, 8, b"") {
            Message::Alive(a) => a,
            _ => unreachable!(),
        }
    });
    feed(
        &mut m,
        now,
        addr(9),
        &[ping_other, suspect_unknown, stale_ack, bad_vsn],
    );
    let s = m.stats();
    assert_eq!(s.drops_for("ping_wrong_node"), 1);
    assert_eq!(s.drops_for("unknown_node"), 1);
    assert_eq!(s.drops_for("ack_unknown_seq"), 1);
    assert_eq!(s.drops_for("bad_vsn"), 1);
    assert!(
        sent_messages(&mut m).is_empty(),
        "answered a ping meant for another node"
    );
    // A conflicting address for a live member is ignored.
    feed(&mut m, now, addr(2), &[alive("peer", 1, 2, b"")]);
    feed(&mut m, now, addr(3), &[alive("peer", 9, 3, b"")]);
    assert_eq!(m.member("peer").map(|p| p.addr), Some(addr(2)));
    assert_eq!(m.stats().drops_for("address_conflict"), 1);
}

#[test]
fn relayed_pings_are_bounded() {
    let now = Instant::now();
    let mut m = node(now);
    for seq in 0..1000u32 {
        let ind = Message::IndirectPing(IndirectPing {
            seq_no: seq,
            target: addr(5).ip(),
            port: 7946,
            node: "t".into(),
            nack: false,
            source_addr: None,
            source_port: None,
            source_node: None,
        });
        feed(&mut m, now, addr(2), &[ind]);
    }
    let pings = sent_messages(&mut m)
        .into_iter()
        .filter(|(_, msg)| matches!(msg, Message::Ping(_)))
        .count();
    assert_eq!(pings as u64 + m.stats().drops_for("relays_full"), 1000);
    assert!(pings < 1000);
}

fn stream_frame(msg: &Message) -> Vec<u8> {
    wire::seal_stream(
        &wire::encode_message(msg),
        &Keyring::new(KEY.into()),
        &mut Nonces::new(5),
    )
}

/// The frames the core wrote to stream `id`, and whether it closed it.
fn stream_output(m: &mut Membership, id: StreamId) -> (Vec<Message>, bool) {
    let ring = Keyring::new(KEY.into());
    let (mut msgs, mut closed) = (Vec::new(), false);
    while let Some(t) = m.poll_transmit() {
        match t {
            Transmit::StreamSend { id: i, bytes } if i == id => {
                let (msg, used) = wire::open_stream(&bytes, &ring).unwrap().unwrap();
                assert_eq!(used, bytes.len());
                msgs.push(msg);
            }
            Transmit::StreamClose { id: i } if i == id => closed = true,
            _ => {}
        }
    }
    (msgs, closed)
}

#[test]
fn serves_push_pull_and_tcp_ping() {
    let now = Instant::now();
    let mut m = node(now);
    let id = StreamId::Incoming(1);
    m.handle_input(now, Input::Accepted { id, from: addr(2) });
    let remote = PushPull {
        join: true,
        skipped: 0,
        nodes: vec![PushNodeState {
            name: "joiner".into(),
            addr: addr(2).ip(),
            port: 7946,
            meta: b"jm".to_vec(),
            incarnation: 1,
            state: NodeState::Alive,
            vsn: WESHER_VSN,
        }],
    };
    let frame = stream_frame(&Message::PushPull(remote));
    // Delivered in two pieces.
    let (a, b) = frame.split_at(7);
    m.handle_input(
        now,
        Input::StreamData {
            id,
            bytes: a.to_vec(),
        },
    );
    m.handle_input(
        now,
        Input::StreamData {
            id,
            bytes: b.to_vec(),
        },
    );
    let (msgs, closed) = stream_output(&mut m, id);
    assert!(closed);
    match &msgs[..] {
        [Message::PushPull(pp)] => {
            assert!(pp.join);
            assert!(pp
                .nodes
                .iter()
                .any(|n| n.name == "me" && n.meta == b"my-meta"));
        }
        other => panic!("unexpected answer {other:?}"),
    }
    assert!(matches!(&events(&mut m)[..], [Event::Join(j)] if j.name == "joiner"));

    let id = StreamId::Incoming(2);
    m.handle_input(now, Input::Accepted { id, from: addr(2) });
    let ping = Message::Ping(Ping {
        seq_no: 77,
        node: "me".into(),
        source_addr: None,
        source_port: None,
        source_node: None,
    });
    m.handle_input(
        now,
        Input::StreamData {
            id,
            bytes: stream_frame(&ping),
        },
    );
    let (msgs, closed) = stream_output(&mut m, id);
    assert!(closed);
    assert!(matches!(&msgs[..], [Message::Ack(a)] if a.seq_no == 77));

    // Garbage on a stream: an error answer, then close.
    let id = StreamId::Incoming(3);
    m.handle_input(now, Input::Accepted { id, from: addr(2) });
    m.handle_input(
        now,
        Input::StreamData {
            id,
            bytes: vec![0x0a, 0, 0, 0, 40, 1, 2, 3],
        },
    );
    m.handle_input(
        now,
        Input::StreamData {
            id,
            bytes: vec![0; 40],
        },
    );
    let (msgs, closed) = stream_output(&mut m, id);
    assert!(closed);
    assert!(matches!(&msgs[..], [Message::Err(_)]));
    // A stream that never finishes its frame is closed at the TCP timeout.
    let id = StreamId::Incoming(4);
    m.handle_input(now, Input::Accepted { id, from: addr(2) });
    m.handle_input(
        now,
        Input::StreamData {
            id,
            bytes: vec![0x0a, 0, 0, 1, 0],
        },
    );
    m.handle_timeout(now + Timing::lan().tcp_timeout);
    assert!(stream_output(&mut m, id).1);
}

#[test]
fn join_sends_our_state_and_reports_each_address() {
    let now = Instant::now();
    let mut m = node(now);
    m.join(now, &[addr(2), addr(3)]);
    let mut ids = Vec::new();
    while let Some(t) = m.poll_transmit() {
        if let Transmit::Connect { id, to } = t {
            ids.push((id, to));
        }
    }
    assert_eq!(ids.len(), 2);
    let ok_id = ids[0].0;
    // The first connects and answers with its state.
    m.handle_input(now, Input::Connected { id: ok_id });
    let (msgs, closed) = stream_output(&mut m, ok_id);
    assert!(!closed);
    assert!(matches!(&msgs[..], [Message::PushPull(pp)] if pp.join && pp.nodes.len() == 1));
    let answer = PushPull {
        join: true,
        skipped: 0,
        nodes: vec![
            PushNodeState {
                name: "seed".into(),
                addr: addr(2).ip(),
                port: 7946,
                meta: vec![],
                incarnation: 4,
                state: NodeState::Alive,
                vsn: WESHER_VSN,
            },
            PushNodeState {
                name: "gone".into(),
                addr: addr(4).ip(),
                port: 7946,
                meta: vec![],
                incarnation: 2,
                state: NodeState::Left,
                vsn: WESHER_VSN,
            },
        ],
    };
    m.handle_input(
        now,
        Input::StreamData {
            id: ok_id,
            bytes: stream_frame(&Message::PushPull(answer)),
        },
    );
    // The second never connects: the TCP timeout fails it.
    m.handle_timeout(now + Timing::lan().tcp_timeout);
    let evs = events(&mut m);
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::Join(j) if j.name == "seed")));
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::JoinResult { addr: a, result: Ok(2) } if *a == addr(2))));
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::JoinResult { addr: a, result: Err(_) } if *a == addr(3))));
    // A member we only heard of as left is not resurrected (unknown then, so not even listed).
    assert_ne!(m.member("gone").map(|g| g.state), Some(MemberState::Alive));
}

#[test]
fn packets_stay_within_1400_bytes_with_incompressible_broadcasts() {
    let now = Instant::now();
    let mut m = node(now);
    // 60 members with 200 bytes of noise as meta: 60 queued alive broadcasts of ~270 bytes.
    let mut x: u32 = 1;
    for i in 0..60u8 {
        let meta: Vec<u8> = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        feed(
            &mut m,
            now,
            addr(2),
            &[alive(&format!("n{i}"), 1, 10 + i, &meta)],
        );
    }
    let ping = Message::Ping(Ping {
        seq_no: 1,
        node: "me".into(),
        source_addr: None,
        source_port: None,
        source_node: None,
    });
    feed(&mut m, now, addr(2), &[ping]);
    m.handle_timeout(now + Duration::from_secs(1));
    let ring = Keyring::new(KEY.into());
    let mut parts = Vec::new();
    while let Some(t) = m.poll_transmit() {
        if let Transmit::Datagram { bytes, .. } = t {
            assert!(bytes.len() <= 1400, "datagram of {} bytes", bytes.len());
            parts.push(wire::open_packet(&bytes, &ring).unwrap().len());
        }
    }
    assert!(parts.len() >= 2, "{parts:?}");
    assert!(
        parts.iter().all(|&n| n >= 4),
        "packets not filled: {parts:?}"
    );
}

#[test]
fn push_pull_with_incompatible_protocol_versions_is_refused() {
    let now = Instant::now();
    let mut m = node(now);
    m.join(now, &[addr(2)]);
    let id = std::iter::from_fn(|| m.poll_transmit())
        .find_map(|t| match t {
            Transmit::Connect { id, .. } => Some(id),
            _ => None,
        })
        .expect("connect");
    m.handle_input(now, Input::Connected { id });
    stream_output(&mut m, id);
    let answer = PushPull {
        join: true,
        skipped: 0,
        nodes: vec![PushNodeState {
            name: "future".into(),
            addr: addr(2).ip(),
            port: 7946,
            meta: vec![],
            incarnation: 1,
            state: NodeState::Alive,
            // Understands only protocol 3..=5: our current version 2 is out of its range.
            vsn: [3, 5, 3, 0, 0, 0],
        }],
    };
    m.handle_input(
        now,
        Input::StreamData {
            id,
            bytes: stream_frame(&Message::PushPull(answer)),
        },
    );
    let evs = events(&mut m);
    assert!(
        matches!(&evs[..], [Event::JoinResult { result: Err(e), .. }] if e.contains("incompatible")),
        "{evs:?}"
    );
    assert!(m.member("future").is_none());
    assert_eq!(m.stats().drops_for("incompatible_protocol"), 1);
}

/// Go wesher bound to 0.0.0.0 announces its IPv4 address in Go's 16-byte form, and Go's aliveNode
/// rejects any other byte form of a known node's address as a conflict: a relay must keep it.
#[test]
fn relays_a_go_node_address_in_the_byte_form_it_announced() {
    let now = Instant::now();
    let mut m = node(now);
    let std::net::IpAddr::V4(v4) = addr(3).ip() else {
        panic!("addr() is IPv4");
    };
    let go_form = std::net::IpAddr::V6(v4.to_ipv6_mapped());
    let go_alive = Message::Alive(Alive {
        incarnation: 1,
        node: "gonode".into(),
        addr: go_form,
        port: 7946,
        meta: b"gm".to_vec(),
        vsn: WESHER_VSN,
    });
    feed(&mut m, now, addr(3), &[go_alive]);
    let member = m.members().find(|n| n.name == "gonode").cloned();
    assert_eq!(member.map(|n| n.addr), Some(addr(3)), "used as IPv4");

    let id = StreamId::Incoming(1);
    m.handle_input(now, Input::Accepted { id, from: addr(2) });
    let ask = PushPull {
        join: false,
        skipped: 0,
        nodes: Vec::new(),
    };
    m.handle_input(
        now,
        Input::StreamData {
            id,
            bytes: stream_frame(&Message::PushPull(ask)),
        },
    );
    let (msgs, _) = stream_output(&mut m, id);
    let [Message::PushPull(pp)] = &msgs[..] else {
        panic!("unexpected answer {msgs:?}");
    };
    let addr_of = |name: &str| pp.nodes.iter().find(|n| n.name == name).map(|n| n.addr);
    assert_eq!(addr_of("gonode"), Some(go_form));
    assert_eq!(addr_of("me"), Some(addr(1).ip()));
    // The bytes on the wire are the 16-byte form.
    let encoded = wire::encode_message(&Message::PushPull(pp.clone()));
    let mut sixteen = vec![0u8; 10];
    sixteen.extend_from_slice(&[0xff, 0xff, 127, 0, 0, 3]);
    assert!(encoded.windows(16).any(|w| w == sixteen.as_slice()));
}

/// A compound packet of raw parts (some of them not valid messages), sealed as Go would.
fn raw_packet(parts: &[Vec<u8>]) -> Vec<u8> {
    let opts = PacketOpts {
        crc: true,
        compress: false,
    };
    wire::seal_packet(parts, opts, &Keyring::new(KEY.into()), &mut Nonces::new(2))
}

#[test]
fn a_bad_part_of_a_compound_costs_that_part_only() {
    let now = Instant::now();
    let mut m = node(now);
    let parts = vec![
        wire::encode_message(&alive("a", 1, 2, b"")),
        vec![0x63, 0x80],
        vec![kind::SUSPECT, 0xc1],
        wire::encode_message(&alive("b", 1, 3, b"")),
    ];
    let bytes = raw_packet(&parts);
    m.handle_input(
        now,
        Input::Datagram {
            from: addr(2),
            bytes,
        },
    );
    assert_eq!(m.member("a").map(|p| p.state), Some(MemberState::Alive));
    assert_eq!(m.member("b").map(|p| p.state), Some(MemberState::Alive));
    assert_eq!(m.stats().drops_for("unknown_type"), 1);
    assert_eq!(m.stats().drops_for("msgpack"), 1);
    assert_eq!(m.stats().messages_in, 2);
}

/// A push-pull frame whose entry named `bad` gets a name that is not UTF-8 (Go strings are
/// bytes, so Go peers can send one).
fn push_pull_with_a_bad_name(join: bool, names: &[&str], bad: &str) -> Vec<u8> {
    let pp = Message::PushPull(PushPull {
        join,
        skipped: 0,
        nodes: names
            .iter()
            .enumerate()
            .map(|(i, name)| PushNodeState {
                name: (*name).into(),
                addr: addr(10 + i as u8).ip(),
                port: 7946,
                meta: vec![],
                incarnation: 1,
                state: NodeState::Alive,
                vsn: WESHER_VSN,
            })
            .collect(),
    });
    let mut bytes = wire::encode_message(&pp);
    let at = bytes
        .windows(bad.len())
        .position(|w| w == bad.as_bytes())
        .expect("the name is in the message");
    bytes[at..at + bad.len()].fill(0xff);
    wire::seal_stream(&bytes, &Keyring::new(KEY.into()), &mut Nonces::new(6))
}

#[test]
fn a_push_pull_entry_whose_name_is_not_utf8_costs_that_entry_only() {
    let now = Instant::now();
    // Served: the two good entries are merged, the bad one counted.
    let mut m = node(now);
    let id = StreamId::Incoming(1);
    m.handle_input(now, Input::Accepted { id, from: addr(2) });
    let bytes = push_pull_with_a_bad_name(false, &["good1", "BADNAME", "good2"], "BADNAME");
    m.handle_input(now, Input::StreamData { id, bytes });
    let (msgs, closed) = stream_output(&mut m, id);
    assert!(closed);
    assert!(matches!(&msgs[..], [Message::PushPull(_)]), "{msgs:?}");
    assert!(m.member("good1").is_some() && m.member("good2").is_some());
    assert_eq!(m.stats().drops_for("name_not_utf8"), 1);
    // Our join: it succeeds with what could be kept.
    let mut m = node(now);
    m.join(now, &[addr(2)]);
    let Some(Transmit::Connect { id, .. }) = m.poll_transmit() else {
        panic!("join connects");
    };
    m.handle_input(now, Input::Connected { id });
    stream_output(&mut m, id);
    let bytes = push_pull_with_a_bad_name(true, &["seed", "BADNAME"], "BADNAME");
    m.handle_input(now, Input::StreamData { id, bytes });
    let results: Vec<Event> = events(&mut m)
        .into_iter()
        .filter(|e| matches!(e, Event::JoinResult { .. }))
        .collect();
    assert!(
        matches!(&results[..], [Event::JoinResult { result: Ok(1), .. }]),
        "{results:?}"
    );
    assert_eq!(m.member("seed").map(|p| p.state), Some(MemberState::Alive));
}

#[test]
fn an_alive_with_incarnation_zero_is_dead_since_ever_as_in_go() {
    let now = Instant::now();
    let mut m = node(now);
    feed(&mut m, now, addr(2), &[alive("peer", 1, 2, b"")]);
    feed(&mut m, now, addr(3), &[alive("zero", 0, 3, b"")]);
    assert_eq!(m.member("zero").map(|p| p.state), Some(MemberState::Dead));
    assert!(events(&mut m)
        .iter()
        .all(|e| !matches!(e, Event::Join(p) if p.name == "zero")));
    // Not "recently dead": no gossip, probe or push-pull goes to it, and the next probe round
    // reaps it (LAN keeps recently dead members 30 s).
    let mut t = now;
    let mut to_zero = 0;
    while t < now + Duration::from_secs(3) {
        t += Duration::from_millis(50);
        m.handle_timeout(t);
        while let Some(tx) = m.poll_transmit() {
            match tx {
                Transmit::Datagram { to, .. } | Transmit::Connect { to, .. } if to == addr(3) => {
                    to_zero += 1
                }
                _ => {}
            }
        }
    }
    assert_eq!(to_zero, 0);
    assert!(m.member("zero").is_none());
}

#[test]
fn a_probe_tick_during_a_long_probe_is_kept_pending_as_go_does() {
    // "good" acks every ping at once. "udp-blocked" answers only the TCP fallback ping, so
    // each probe of it runs its whole interval (and succeeds then: it stays alive, awareness
    // stays 0). Wake-ups come 0-5 ms late, as a loaded event loop's do, so such a probe often
    // still runs when the next tick is due. Go's ticker keeps that tick pending and probes
    // right after; losing it would cost one more interval per such probe. (Two good peers:
    // with three nodes Go's probe loop itself gives up a tick when a reshuffle puts the local
    // node first, and so do we.)
    let start = Instant::now();
    let mut m = node(start);
    feed(&mut m, start, addr(2), &[alive("good", 1, 2, b"")]);
    feed(&mut m, start, addr(4), &[alive("good2", 1, 4, b"")]);
    feed(&mut m, start, addr(3), &[alive("udp-blocked", 1, 3, b"")]);
    let ring = Keyring::new(KEY.into());
    let mut now = start;
    let mut late: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut probes = Vec::new();
    while now < start + Duration::from_secs(30) {
        late ^= late << 13;
        late ^= late >> 7;
        late ^= late << 17;
        let lateness = Duration::from_micros(late % 5000);
        now = m.next_deadline().expect("timers run").max(now) + lateness;
        m.handle_timeout(now);
        while let Some(t) = m.poll_transmit() {
            match t {
                Transmit::Datagram { to, bytes } => {
                    for msg in wire::open_packet(&bytes, &ring).expect("our packet opens") {
                        match msg {
                            Message::Ping(p) if p.node != "me" => {
                                probes.push(now);
                                if to != addr(3) {
                                    let ack = AckResp {
                                        seq_no: p.seq_no,
                                        payload: None,
                                    };
                                    feed(&mut m, now, to, &[Message::Ack(ack)]);
                                }
                            }
                            Message::IndirectPing(p) => {
                                let nack = NackResp { seq_no: p.seq_no };
                                feed(&mut m, now, to, &[Message::Nack(nack)]);
                            }
                            _ => {}
                        }
                    }
                }
                Transmit::Connect { id, to } if to == addr(3) => {
                    m.handle_input(now, Input::Connected { id })
                }
                Transmit::StreamSend { id, bytes } => {
                    if let Ok(Some((Message::Ping(p), _))) = wire::open_stream(&bytes, &ring) {
                        let ack = Message::Ack(AckResp {
                            seq_no: p.seq_no,
                            payload: None,
                        });
                        let bytes = stream_frame(&ack);
                        m.handle_input(now, Input::StreamData { id, bytes });
                    }
                }
                _ => {}
            }
        }
    }
    assert_eq!(m.health_score(), 0);
    assert_eq!(
        m.member("udp-blocked").map(|p| p.state),
        Some(MemberState::Alive)
    );
    let gaps: Vec<Duration> = probes.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|&g| g <= Duration::from_millis(1010)),
        "a probe interval was lost: {gaps:?}"
    );
    assert!(probes.len() >= 29, "{} probes in 30 s", probes.len());
    assert_eq!(m.stats().probes, probes.len() as u64);
}

#[test]
fn an_indirect_ping_without_a_port_goes_to_the_cluster_port() {
    let now = Instant::now();
    let mut m = node(now);
    let ind = Message::IndirectPing(IndirectPing {
        seq_no: 5,
        target: addr(5).ip(),
        port: 0,
        node: "target".into(),
        nack: false,
        source_addr: None,
        source_port: None,
        source_node: None,
    });
    feed(&mut m, now, addr(2), &[ind]);
    let pinged: Vec<SocketAddr> = sent_messages(&mut m)
        .into_iter()
        .filter(|(_, msg)| matches!(msg, Message::Ping(p) if p.node == "target"))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(pinged, [addr(5)]);
}

#[test]
fn labelled_packets_are_dropped_as_go_does_without_a_label() {
    let now = Instant::now();
    let mut m = node(now);
    let mut bytes = vec![kind::HAS_LABEL, 3];
    bytes.extend_from_slice(b"lab");
    bytes.extend_from_slice(&packet(&[alive("peer", 1, 2, b"")]));
    m.handle_input(
        now,
        Input::Datagram {
            from: addr(2),
            bytes,
        },
    );
    assert!(m.member("peer").is_none());
    assert_eq!(m.stats().drops_for("label"), 1);
}

#[test]
fn incarnations_wrap_like_go_u32() {
    let now = Instant::now();
    let mut m = node(now);
    feed(&mut m, now, addr(2), &[alive("peer", 1, 2, b"")]);
    sent_messages(&mut m);
    let accuse = Message::Suspect(Suspect {
        incarnation: u32::MAX,
        node: "me".into(),
        from: "peer".into(),
    });
    feed(&mut m, now, addr(2), &[accuse]);
    // Go: nextIncarnation then skipIncarnation(accused - inc + 1) on a u32: accused + 1 = 0.
    assert_eq!(m.local().incarnation, 0);
}

#[test]
fn timers_start_as_go_memberlist_schedules_them() {
    // Go: the probe ticker's first tick one interval after start; the first periodic
    // push-pull after a random stagger plus one whole period (pushPullTrigger), so a node that
    // just joined does not push-pull again within the first period.
    let start = Instant::now();
    let t = Timing::wan();
    for seed in 0..8 {
        let config = Config {
            name: "me".into(),
            advertise: addr(1),
            keyring: Keyring::new(KEY.into()),
            timing: t.clone(),
            meta: vec![],
        };
        let mut m = Membership::new(config, start, seed);
        feed(&mut m, start, addr(2), &[alive("peer", 1, 2, b"")]);
        let (mut first_probe, mut first_push_pull) = (None, None);
        let mut now = start;
        while first_push_pull.is_none() && now < start + 3 * t.push_pull_interval {
            now = m.next_deadline().expect("timers run").max(now);
            m.handle_timeout(now);
            while let Some(tx) = m.poll_transmit() {
                match tx {
                    Transmit::Connect { .. } => first_push_pull = first_push_pull.or(Some(now)),
                    Transmit::Datagram { to, bytes } if to == addr(2) => {
                        let ring = Keyring::new(KEY.into());
                        for msg in wire::open_packet(&bytes, &ring).expect("opens") {
                            if let Message::Ping(p) = msg {
                                first_probe = first_probe.or(Some(now));
                                let ack = AckResp {
                                    seq_no: p.seq_no,
                                    payload: None,
                                };
                                feed(&mut m, now, addr(2), &[Message::Ack(ack)]);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(first_probe.map(|p| p - start), Some(t.probe_interval));
        let pp = first_push_pull.expect("a periodic push-pull") - start;
        assert!(
            pp >= t.push_pull_interval && pp < 2 * t.push_pull_interval,
            "seed {seed}: first push-pull after {pp:?}"
        );
    }
}
