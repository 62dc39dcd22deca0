//! Golden vectors: real Go wesher traffic (tests/vectors/*.txt, copied out of packet captures and
//! decrypted by an independent Python decoder) must open with our codec, and re-encoding what we
//! decoded must reproduce Go's bytes exactly, down to the encrypted datagram.

mod common;

use common::hex;
use std::net::{IpAddr, Ipv4Addr};

use wesher::membership::message::{Message, NodeState, WESHER_VSN};
use wesher::membership::wire::{
    compound, compress, decode_message, encode_message, encrypt, lzw_compress, lzw_decompress,
    open_packet, open_stream, with_crc, Keyring, WireError, MAX_PUSH_STATE_BYTES,
};

const THREE_NODES: &str = include_str!("vectors/three-nodes.txt");
const MIXED_VERSIONS: &str = include_str!("vectors/mixed-versions.txt");

/// One captured packet or stream frame.
struct Capture {
    stream: bool,
    flow: String,
    raw: Vec<u8>,
    plain: Vec<u8>,
    /// Leaf messages with the framing path the Python decoder found them under.
    msgs: Vec<(String, Vec<u8>)>,
}

struct Vectors {
    key: [u8; 32],
    captures: Vec<Capture>,
}

fn parse(text: &str) -> Vectors {
    let mut key = None;
    let mut captures: Vec<Capture> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let words: Vec<&str> = line.split(' ').collect();
        match words[..] {
            ["key", k] => key = Some(hex(k).try_into().expect("32-byte key")),
            [kind @ ("packet" | "stream"), flow, raw] => captures.push(Capture {
                stream: kind == "stream",
                flow: flow.to_string(),
                raw: hex(raw),
                plain: vec![],
                msgs: vec![],
            }),
            ["plain", p] => captures.last_mut().expect("capture").plain = hex(p),
            ["msg", path, m] => {
                let path = if path == "-" { "" } else { path };
                let c = captures.last_mut().expect("capture");
                c.msgs.push((path.to_string(), hex(m)));
            }
            _ => panic!("bad vector line: {line}"),
        }
    }
    Vectors {
        key: key.expect("key line"),
        captures,
    }
}

fn all() -> Vec<Vectors> {
    vec![parse(THREE_NODES), parse(MIXED_VERSIONS)]
}

/// Rebuilds a packet plaintext from its leaf messages, layering the framing the Python decoder
/// reported (outermost first), with our framing functions.
fn reframe(msgs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let path: Vec<&str> = msgs[0].0.split('/').filter(|p| !p.is_empty()).collect();
    assert!(
        msgs.iter().all(|(p, _)| *p == msgs[0].0),
        "one framing per packet"
    );
    let leaves: Vec<Vec<u8>> = msgs.iter().map(|(_, m)| m.clone()).collect();
    let mut payload = if path.last() == Some(&"compound") {
        compound(&leaves)
    } else {
        assert_eq!(leaves.len(), 1);
        leaves[0].clone()
    };
    for layer in path.iter().rev() {
        payload = match *layer {
            "compound" => payload,
            "compress" => compress(&payload),
            "crc" => with_crc(&payload),
            other => panic!("unknown layer {other}"),
        };
    }
    payload
}

#[test]
fn vectors_cover_the_interesting_traffic() {
    let v = all();
    let count = |kind: u8, stream: bool| {
        v.iter()
            .flat_map(|v| &v.captures)
            .filter(|c| c.stream == stream)
            .flat_map(|c| &c.msgs)
            .filter(|(_, m)| m[0] == kind)
            .count()
    };
    assert!(count(0, false) >= 6, "pings");
    assert!(count(2, false) >= 6, "acks");
    assert!(count(4, false) >= 10, "alives");
    assert!(count(5, false) >= 2, "deads");
    assert_eq!(count(6, true), 8, "push-pull streams");
    for v in &v {
        assert!(v
            .captures
            .iter()
            .any(|c| c.msgs[0].0 == "crc/compress/compound"));
    }
}

#[test]
fn every_captured_packet_opens_and_reencodes_identically() {
    for v in all() {
        let ring = Keyring::new(v.key.into());
        for c in v.captures.iter().filter(|c| !c.stream) {
            let msgs = open_packet(&c.raw, &ring).unwrap_or_else(|e| panic!("{}: {e}", c.flow));
            assert_eq!(msgs.len(), c.msgs.len(), "{}", c.flow);
            for (msg, (_, go)) in msgs.iter().zip(&c.msgs) {
                assert_eq!(&encode_message(msg), go, "{}: {msg:?}", c.flow);
            }
        }
    }
}

#[test]
fn captured_packets_reseal_byte_identically() {
    for v in all() {
        for c in v.captures.iter().filter(|c| !c.stream) {
            let plain = reframe(&c.msgs);
            assert_eq!(plain, c.plain, "{}: framing", c.flow);
            let nonce: [u8; 12] = c.raw[1..13].try_into().expect("nonce");
            assert_eq!(
                encrypt(&v.key.into(), nonce, &plain, b""),
                c.raw,
                "{}",
                c.flow
            );
        }
    }
}

#[test]
fn every_captured_stream_opens_and_reseals_byte_identically() {
    for v in all() {
        let ring = Keyring::new(v.key.into());
        for c in v.captures.iter().filter(|c| c.stream) {
            let (msg, used) = open_stream(&c.raw, &ring)
                .unwrap_or_else(|e| panic!("{}: {e}", c.flow))
                .expect("complete frame");
            assert_eq!(used, c.raw.len());
            let encoded = encode_message(&msg);
            assert_eq!(encoded, c.msgs[0].1, "{}", c.flow);
            // Go always compresses stream payloads; ours must match theirs bit for bit.
            assert_eq!(compress(&encoded), c.plain, "{}", c.flow);
            let nonce: [u8; 12] = c.raw[6..18].try_into().expect("nonce");
            assert_eq!(
                encrypt(&v.key.into(), nonce, &c.plain, &c.raw[..5]),
                c.raw[5..]
            );
            for cut in 0..c.raw.len() {
                assert_eq!(open_stream(&c.raw[..cut], &ring), Ok(None), "cut {cut}");
            }
        }
    }
}

#[test]
fn captured_lzw_payloads_round_trip() {
    for v in all() {
        for c in &v.captures {
            let Some(at) = c.plain.windows(4).position(|w| w == b"\xa3Buf") else {
                continue;
            };
            // The Buf value follows its key: fixraw or raw16 in these captures.
            let buf = match c.plain[at + 4] {
                0xda => {
                    let n = usize::from(u16::from_be_bytes([c.plain[at + 5], c.plain[at + 6]]));
                    &c.plain[at + 7..at + 7 + n]
                }
                t => &c.plain[at + 5..at + 5 + usize::from(t & 0x1f)],
            };
            let raw = lzw_decompress(buf, 1 << 20).expect("Go's LZW decodes");
            assert_eq!(lzw_compress(&raw), buf, "{}", c.flow);
        }
    }
}

#[test]
fn decoded_values_match_the_capture() {
    let v = parse(THREE_NODES);
    let ring = Keyring::new(v.key.into());
    let first = open_packet(&v.captures[0].raw, &ring).expect("opens");
    let Message::Alive(a) = &first[0] else {
        panic!("expected alive, got {first:?}");
    };
    assert_eq!(a.node, "node1");
    assert_eq!(a.addr, IpAddr::V4(Ipv4Addr::new(192, 168, 77, 1)));
    assert_eq!((a.incarnation, a.port, a.vsn), (2, 7946, WESHER_VSN));
    assert_eq!(a.meta.len(), 124);

    let ping = v
        .captures
        .iter()
        .find(|c| c.msgs[0].1[0] == 0 && c.msgs.len() == 1)
        .expect("a ping");
    let Message::Ping(p) = &open_packet(&ping.raw, &ring).expect("opens")[0] else {
        panic!("expected a ping");
    };
    assert_eq!(p.node, "node2");
    assert_eq!(p.source_node.as_deref(), Some("node1"));
    assert_eq!(
        p.source_addr,
        Some(IpAddr::V4(Ipv4Addr::new(192, 168, 77, 1)))
    );
    assert_eq!(p.source_port, Some(7946));

    let last = v.captures.last().expect("streams");
    let Some((Message::PushPull(pp), _)) = open_stream(&last.raw, &ring).expect("opens") else {
        panic!("expected push-pull");
    };
    assert!(pp.join);
    let names: Vec<&str> = pp.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node2", "node1"]);
    assert!(pp.nodes.iter().all(|n| n.state == NodeState::Alive));

    let m = parse(MIXED_VERSIONS);
    let dead = m
        .captures
        .iter()
        .find(|c| c.msgs.iter().any(|(_, b)| b[0] == 5))
        .expect("a dead message");
    let msgs = open_packet(&dead.raw, &Keyring::new(m.key.into())).expect("opens");
    let d = msgs
        .iter()
        .find_map(|m| match m {
            Message::Dead(d) => Some(d),
            _ => None,
        })
        .expect("dead");
    assert_eq!((d.node.as_str(), d.from.as_str()), ("node3", "node3"));
}

#[test]
fn wrong_key_is_rejected_and_secondary_keys_decrypt() {
    for v in all() {
        let wrong = Keyring::new([0x5a; 32].into());
        let mut rotated = Keyring::new([0x5a; 32].into());
        rotated.install(v.key.into());
        for c in &v.captures {
            if c.stream {
                assert_eq!(open_stream(&c.raw, &wrong), Err(WireError::Decrypt));
                assert!(matches!(open_stream(&c.raw, &rotated), Ok(Some(_))));
            } else {
                assert_eq!(open_packet(&c.raw, &wrong), Err(WireError::Decrypt));
                assert!(open_packet(&c.raw, &rotated).is_ok());
            }
        }
    }
}

#[test]
fn truncated_and_flipped_packets_are_rejected() {
    let v = parse(THREE_NODES);
    let ring = Keyring::new(v.key.into());
    for c in v.captures.iter().filter(|c| !c.stream).take(4) {
        for cut in 0..c.raw.len() {
            let kind = open_packet(&c.raw[..cut], &ring).map_err(|e| e.kind());
            let want = if cut < 29 { "truncated" } else { "decrypt" };
            assert_eq!(kind, Err(want), "{} cut at {cut}", c.flow);
        }
        for bit in 0..c.raw.len() * 8 {
            let mut bad = c.raw.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let res = open_packet(&bad, &ring);
            if bit < 8 {
                // The version byte is not authenticated (nor is it in Go): as version 0 the
                // payload decrypts, loses its "padding" and fails further in.
                assert!(res.is_err(), "{} bit {bit}", c.flow);
            } else {
                assert_eq!(res, Err(WireError::Decrypt), "{} bit {bit}", c.flow);
            }
        }
    }
}

#[test]
fn flipped_and_oversized_streams_are_rejected() {
    let v = parse(MIXED_VERSIONS);
    let ring = Keyring::new(v.key.into());
    let c = v.captures.iter().find(|c| c.stream).expect("a stream");
    for bit in 0..c.raw.len() * 8 {
        let mut bad = c.raw.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        match open_stream(&bad, &ring) {
            // A flipped length either waits for bytes that never come or is refused.
            Ok(None) => assert!((8..40).contains(&bit), "bit {bit}"),
            Err(e) if bit < 8 => assert_eq!(e.kind(), "unencrypted"),
            Err(e) => assert!(
                ["decrypt", "too_large", "truncated"].contains(&e.kind()),
                "bit {bit}: {e}"
            ),
            Ok(Some(m)) => panic!("bit {bit} flipped and still opened: {m:?}"),
        }
    }
    let mut huge = c.raw.clone();
    huge[1..5].copy_from_slice(&(MAX_PUSH_STATE_BYTES as u32 + 1).to_be_bytes());
    assert_eq!(
        open_stream(&huge, &ring).map_err(|e| e.kind()),
        Err("too_large")
    );
    let mut plain = c.raw.clone();
    plain[0] = 9;
    assert_eq!(
        open_stream(&plain, &ring).map_err(|e| e.kind()),
        Err("unencrypted")
    );
}

#[test]
fn captured_messages_decode_standalone() {
    // Every leaf message decodes on its own and re-encodes to itself.
    for v in all() {
        for c in &v.captures {
            for (_, m) in &c.msgs {
                let msg = decode_message(m).unwrap_or_else(|e| panic!("{}: {e}", c.flow));
                assert_eq!(&encode_message(&msg), m);
            }
        }
    }
}
