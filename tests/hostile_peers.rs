//! What strangers and hostile members can make the SWIM core hold: incoming TCP streams from
//! strangers (no cluster key) are bounded in slots per source and in all, bytes buffered,
//! declared frame size and time to the first frame; members' metadata and names are bounded.
//! Driven by hand on a virtual clock with real codec bytes; a real peer is served throughout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wesher::membership::io::{Input, StreamId, Transmit};
use wesher::membership::message::*;
use wesher::membership::wire::{self, Nonces};
use wesher::membership::{Config, Keyring, Membership, Timing};

const KEY: [u8; 32] = [9; 32];
/// The documented bounds (src/membership/stream.rs, wire.rs).
const PER_SOURCE: usize = 8;
const PENDING: usize = 64;
const FRAME: usize = 1024 * 1024;
const FIRST_FRAME: Duration = Duration::from_secs(5);

fn addr(a: u8, b: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, a, b], 7946))
}

fn node(now: Instant) -> Membership {
    let config = Config {
        name: "me".into(),
        advertise: addr(0, 1),
        keyring: Keyring::new(KEY.into()),
        timing: Timing::lan(),
        meta: b"my-meta".to_vec(),
    };
    Membership::new(config, now, 7)
}

fn accept(m: &mut Membership, now: Instant, id: StreamId, from: SocketAddr) {
    m.handle_input(now, Input::Accepted { id, from });
}

fn data(m: &mut Membership, now: Instant, id: StreamId, bytes: Vec<u8>) {
    m.handle_input(now, Input::StreamData { id, bytes });
}

/// A stream header declaring `len` payload bytes.
fn header(len: usize) -> Vec<u8> {
    let mut h = vec![0x0a];
    h.extend_from_slice(&(len as u32).to_be_bytes());
    h
}

/// Streams the core closed, and streams it answered with a push-pull, since the last call.
fn closed_and_served(m: &mut Membership) -> (Vec<StreamId>, Vec<StreamId>) {
    let ring = Keyring::new(KEY.into());
    let (mut closed, mut served) = (Vec::new(), Vec::new());
    while let Some(t) = m.poll_transmit() {
        match t {
            Transmit::StreamClose { id } => closed.push(id),
            Transmit::StreamSend { id, bytes } => {
                if let Ok(Some((Message::PushPull(_), _))) = wire::open_stream(&bytes, &ring) {
                    served.push(id);
                }
            }
            _ => {}
        }
    }
    (closed, served)
}

/// A real member's join: accepted, one frame, answered.
fn real_join(m: &mut Membership, now: Instant, id: StreamId, from: SocketAddr) -> bool {
    join_as(m, now, id, from, &format!("real-{}", from.ip()), b"m")
}

/// A join by a member called `name` with metadata `meta`; true if it was answered.
fn join_as(
    m: &mut Membership,
    now: Instant,
    id: StreamId,
    from: SocketAddr,
    name: &str,
    meta: &[u8],
) -> bool {
    accept(m, now, id, from);
    let pp = PushPull {
        join: true,
        nodes: vec![PushNodeState {
            name: name.into(),
            addr: from.ip(),
            port: 7946,
            meta: meta.to_vec(),
            incarnation: 1,
            state: NodeState::Alive,
            vsn: WESHER_VSN,
        }],
        skipped: 0,
    };
    let frame = wire::seal_stream(
        &wire::encode_message(&Message::PushPull(pp)),
        &Keyring::new(KEY.into()),
        &mut Nonces::new(3),
    );
    data(m, now, id, frame);
    closed_and_served(m).1.contains(&id)
}

fn drops(m: &Membership, kind: &str) -> u64 {
    m.stats().drops_for(kind)
}

#[test]
fn one_source_gets_a_few_slots_and_others_are_still_served() {
    let now = Instant::now();
    let mut m = node(now);
    let squatter = addr(6, 6);
    for i in 0..PER_SOURCE as u64 + 50 {
        accept(&mut m, now, StreamId::Incoming(i), squatter);
    }
    let (closed, _) = closed_and_served(&mut m);
    let expected: Vec<StreamId> = (PER_SOURCE as u64..PER_SOURCE as u64 + 50)
        .map(StreamId::Incoming)
        .collect();
    assert_eq!(
        closed, expected,
        "the first {PER_SOURCE} are kept, the rest refused"
    );
    assert_eq!(drops(&m, "too_many_streams_from_source"), 50);
    assert!(real_join(&mut m, now, StreamId::Incoming(1000), addr(1, 2)));
}

#[test]
fn when_all_slots_are_taken_the_oldest_stranger_makes_room() {
    let now = Instant::now();
    let mut m = node(now);
    for i in 0..PENDING as u64 {
        let from = addr(7, i as u8);
        accept(&mut m, now, StreamId::Incoming(i), from);
    }
    assert_eq!(closed_and_served(&mut m).0, vec![]);
    let new = StreamId::Incoming(500);
    accept(&mut m, now, new, addr(1, 9));
    assert_eq!(closed_and_served(&mut m).0, vec![StreamId::Incoming(0)]);
    // The newcomer is a real member: served. So is the next one, which evicts stream 1.
    assert!(real_join(&mut m, now, StreamId::Incoming(501), addr(1, 10)));
    assert_eq!(drops(&m, "pending_stream_evicted"), 2);
}

#[test]
fn a_frame_declared_too_large_is_refused_on_its_header() {
    let now = Instant::now();
    let mut m = node(now);
    for (i, len) in [(1u64, 20 << 20), (2, FRAME + 1)] {
        let id = StreamId::Incoming(i);
        accept(&mut m, now, id, addr(2, i as u8));
        data(&mut m, now, id, header(len));
        assert_eq!(closed_and_served(&mut m).0, vec![id], "{len} bytes");
    }
    assert_eq!(drops(&m, "too_large"), 2);
    // The largest legitimate size is waited for.
    let id = StreamId::Incoming(3);
    accept(&mut m, now, id, addr(2, 3));
    data(&mut m, now, id, header(FRAME));
    assert_eq!(closed_and_served(&mut m).0, vec![]);
}

#[test]
fn buffered_bytes_of_all_strangers_together_are_bounded() {
    let now = Instant::now();
    let mut m = node(now);
    let chunk = FRAME - 1000;
    for i in 0..3u64 {
        let id = StreamId::Incoming(i);
        accept(&mut m, now, id, addr(3, i as u8));
        let mut bytes = header(FRAME);
        bytes.resize(chunk, 0);
        data(&mut m, now, id, bytes);
    }
    // Two nearly full frames fit the budget; the third evicts the oldest.
    assert_eq!(closed_and_served(&mut m).0, vec![StreamId::Incoming(0)]);
    assert_eq!(drops(&m, "pending_stream_evicted"), 1);
    assert!(real_join(&mut m, now, StreamId::Incoming(9), addr(1, 1)));
}

#[test]
fn a_stream_gets_a_few_seconds_for_its_first_frame() {
    let now = Instant::now();
    let mut m = node(now);
    let id = StreamId::Incoming(1);
    accept(&mut m, now, id, addr(4, 4));
    data(&mut m, now, id, header(100));
    assert!(m.next_deadline().is_some_and(|d| d <= now + FIRST_FRAME));
    m.handle_timeout(now + FIRST_FRAME - Duration::from_millis(1));
    assert!(!closed_and_served(&mut m).0.contains(&id));
    m.handle_timeout(now + FIRST_FRAME);
    assert!(closed_and_served(&mut m).0.contains(&id));
}

#[test]
fn oversized_metadata_and_unusable_names_are_refused() {
    let now = Instant::now();
    let mut m = node(now);
    let long = "n".repeat(256);
    let cases: [(&str, &[u8]); 4] = [
        ("big-meta", &[7; 513]),
        ("bell\x07\x1b[2J", b"m"),
        (&long, b"m"),
        ("", b"m"),
    ];
    for (i, (name, meta)) in cases.iter().enumerate() {
        let from = addr(5, i as u8);
        join_as(&mut m, now, StreamId::Incoming(i as u64), from, name, meta);
    }
    assert_eq!(drops(&m, "meta_too_large"), 1);
    assert_eq!(drops(&m, "bad_name"), 3);
    // The largest legitimate metadata and a 255-byte name are members.
    join_as(
        &mut m,
        now,
        StreamId::Incoming(10),
        addr(5, 10),
        "ok-meta",
        &[7; 512],
    );
    join_as(
        &mut m,
        now,
        StreamId::Incoming(11),
        addr(5, 11),
        &long[..255],
        b"m",
    );
    let names: Vec<String> = m.members().map(|mem| mem.name.clone()).collect();
    assert!(names.contains(&"ok-meta".to_string()), "{names:?}");
    assert!(names.contains(&long[..255].to_string()), "{names:?}");
    assert_eq!(names.len(), 3, "{names:?}");
}
