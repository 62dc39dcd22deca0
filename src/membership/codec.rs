//! Message bodies as Go's go-msgpack writes them: one type byte, then a map keyed by the Go
//! struct's field names in alphabetical order. Framing around messages lives in `wire`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::message::{
    kind, AckResp, Alive, Dead, ErrResp, IndirectPing, Message, NackResp, NodeState, Ping,
    PushNodeState, PushPull, Suspect, Vsn,
};
use super::msgpack::{read_fields, Fields, Reader};
use super::wire::WireError;

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn ip_from(bytes: &[u8], field: &str) -> Result<IpAddr, WireError> {
    if let Ok(b) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::V4(Ipv4Addr::from(b)))
    } else if let Ok(b) = <[u8; 16]>::try_from(bytes) {
        // Go's net.IP may carry IPv4 in its 16-byte form.
        Ok(IpAddr::V6(Ipv6Addr::from(b)).to_canonical())
    } else {
        Err(WireError::Msgpack(format!(
            "{field} is {} bytes, not an IP address",
            bytes.len()
        )))
    }
}

/// A node's own `Addr` as sent: an IPv4 address in Go's 16-byte form stays a mapped IPv6 address,
/// so that relaying it keeps the bytes. Go's aliveNode compares these bytes and rejects a
/// different form of the same address as a conflict (Go wesher bound to 0.0.0.0 sends 16 bytes).
fn node_ip_from(bytes: &[u8]) -> Result<IpAddr, WireError> {
    match <[u8; 16]>::try_from(bytes) {
        Ok(b) => Ok(IpAddr::V6(Ipv6Addr::from(b))),
        Err(_) => ip_from(bytes, "Addr"),
    }
}

fn vsn_from(bytes: &[u8]) -> Result<Vsn, WireError> {
    Vsn::try_from(bytes)
        .map_err(|_| WireError::Msgpack(format!("Vsn is {} bytes, not 6", bytes.len())))
}

fn state_from(v: u64) -> Result<NodeState, WireError> {
    Ok(match v {
        0 => NodeState::Alive,
        1 => NodeState::Suspect,
        2 => NodeState::Dead,
        3 => NodeState::Left,
        v => return Err(WireError::Msgpack(format!("unknown node state {v}"))),
    })
}

/// The optional reply-to fields of ping and indirect ping, all `omitempty` in Go.
struct Source<'m> {
    addr: Option<Vec<u8>>,
    node: Option<&'m str>,
    port: Option<u16>,
}

impl<'m> Source<'m> {
    fn new(addr: &Option<IpAddr>, port: Option<u16>, node: &'m Option<String>) -> Self {
        Source {
            addr: addr.as_ref().map(ip_bytes),
            node: node.as_deref().filter(|n| !n.is_empty()),
            port: port.filter(|&p| p != 0),
        }
    }
    fn count(&self) -> usize {
        usize::from(self.addr.is_some())
            + usize::from(self.node.is_some())
            + usize::from(self.port.is_some())
    }
    fn write(&self, f: &mut Fields) {
        if let Some(a) = &self.addr {
            f.raw("SourceAddr", a);
        }
        if let Some(n) = self.node {
            f.raw("SourceNode", n.as_bytes());
        }
        if let Some(p) = self.port {
            f.uint("SourcePort", p.into());
        }
    }
}

fn encode_alive(out: &mut Vec<u8>, a: &Alive) {
    Fields::start(out, 6)
        .raw("Addr", &ip_bytes(&a.addr))
        .uint("Incarnation", a.incarnation.into())
        .bytes_or_nil("Meta", &a.meta)
        .raw("Node", a.node.as_bytes())
        .uint("Port", a.port.into())
        .raw("Vsn", &a.vsn);
}

fn encode_node_state(out: &mut Vec<u8>, n: &PushNodeState) {
    Fields::start(out, 7)
        .raw("Addr", &ip_bytes(&n.addr))
        .uint("Incarnation", n.incarnation.into())
        .bytes_or_nil("Meta", &n.meta)
        .raw("Name", n.name.as_bytes())
        .uint("Port", n.port.into())
        .int("State", n.state as u64)
        .raw("Vsn", &n.vsn);
}

/// Encodes one message: its type byte followed by the msgpack body, exactly as Go writes it.
pub fn encode_message(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match msg {
        Message::Ping(p) => {
            out.push(kind::PING);
            let src = Source::new(&p.source_addr, p.source_port, &p.source_node);
            let mut f = Fields::start(&mut out, 2 + src.count());
            f.raw("Node", p.node.as_bytes())
                .uint("SeqNo", p.seq_no.into());
            src.write(&mut f);
        }
        Message::IndirectPing(p) => {
            out.push(kind::INDIRECT_PING);
            let src = Source::new(&p.source_addr, p.source_port, &p.source_node);
            let mut f = Fields::start(&mut out, 5 + src.count());
            f.bool("Nack", p.nack)
                .raw("Node", p.node.as_bytes())
                .uint("Port", p.port.into())
                .uint("SeqNo", p.seq_no.into());
            src.write(&mut f);
            f.raw("Target", &ip_bytes(&p.target));
        }
        Message::Ack(a) => {
            out.push(kind::ACK_RESP);
            let mut f = Fields::start(&mut out, 2);
            match &a.payload {
                Some(p) => f.raw("Payload", p),
                None => f.bytes_or_nil("Payload", &[]),
            };
            f.uint("SeqNo", a.seq_no.into());
        }
        Message::Nack(n) => {
            out.push(kind::NACK_RESP);
            Fields::start(&mut out, 1).uint("SeqNo", n.seq_no.into());
        }
        Message::Suspect(s) => {
            out.push(kind::SUSPECT);
            Fields::start(&mut out, 3)
                .raw("From", s.from.as_bytes())
                .uint("Incarnation", s.incarnation.into())
                .raw("Node", s.node.as_bytes());
        }
        Message::Alive(a) => {
            out.push(kind::ALIVE);
            encode_alive(&mut out, a);
        }
        Message::Dead(d) => {
            out.push(kind::DEAD);
            Fields::start(&mut out, 3)
                .raw("From", d.from.as_bytes())
                .uint("Incarnation", d.incarnation.into())
                .raw("Node", d.node.as_bytes());
        }
        Message::PushPull(pp) => {
            out.push(kind::PUSH_PULL);
            Fields::start(&mut out, 3)
                .bool("Join", pp.join)
                .int("Nodes", pp.nodes.len() as u64)
                .int("UserStateLen", 0);
            for n in &pp.nodes {
                encode_node_state(&mut out, n);
            }
        }
        Message::Err(e) => {
            out.push(kind::ERR_RESP);
            Fields::start(&mut out, 1).raw("Error", e.error.as_bytes());
        }
        Message::User(body) => {
            out.push(kind::USER);
            out.extend_from_slice(body);
        }
    }
    out
}

fn u32_field(r: &mut Reader) -> Result<u32, WireError> {
    Ok(r.uint_max(u32::MAX.into())? as u32)
}

fn u16_field(r: &mut Reader) -> Result<u16, WireError> {
    Ok(r.uint_max(u16::MAX.into())? as u16)
}

pub(super) fn missing(what: &str) -> WireError {
    WireError::Msgpack(format!("missing field {what}"))
}

/// The reply-to fields, decoded; empty values read as absent (Go omits them when empty).
#[derive(Default)]
struct SourceIn {
    addr: Option<IpAddr>,
    port: Option<u16>,
    node: Option<String>,
}

impl SourceIn {
    fn field(&mut self, name: &[u8], r: &mut Reader) -> Result<bool, WireError> {
        match name {
            b"SourceAddr" => {
                let b = r.bytes()?;
                self.addr = if b.is_empty() {
                    None
                } else {
                    Some(ip_from(b, "SourceAddr")?)
                };
            }
            b"SourcePort" => self.port = Some(u16_field(r)?).filter(|&p| p != 0),
            b"SourceNode" => self.node = Some(r.string()?).filter(|n| !n.is_empty()),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn decode_ping(r: &mut Reader) -> Result<Ping, WireError> {
    let (mut seq_no, mut node, mut src) = (0, String::new(), SourceIn::default());
    read_fields(r, |name, r| {
        match name {
            b"SeqNo" => seq_no = u32_field(r)?,
            b"Node" => node = r.string()?,
            _ => return src.field(name, r),
        }
        Ok(true)
    })?;
    Ok(Ping {
        seq_no,
        node,
        source_addr: src.addr,
        source_port: src.port,
        source_node: src.node,
    })
}

fn decode_indirect_ping(r: &mut Reader) -> Result<IndirectPing, WireError> {
    let (mut seq_no, mut target, mut port, mut node, mut nack) = (0, None, 0, String::new(), false);
    let mut src = SourceIn::default();
    read_fields(r, |name, r| {
        match name {
            b"SeqNo" => seq_no = u32_field(r)?,
            b"Target" => target = Some(ip_from(r.bytes()?, "Target")?),
            b"Port" => port = u16_field(r)?,
            b"Node" => node = r.string()?,
            b"Nack" => nack = r.bool()?,
            _ => return src.field(name, r),
        }
        Ok(true)
    })?;
    Ok(IndirectPing {
        seq_no,
        target: target.ok_or_else(|| missing("Target"))?,
        port,
        node,
        nack,
        source_addr: src.addr,
        source_port: src.port,
        source_node: src.node,
    })
}

fn decode_ack(r: &mut Reader) -> Result<AckResp, WireError> {
    let (mut seq_no, mut payload) = (0, None);
    read_fields(r, |name, r| {
        match name {
            b"SeqNo" => seq_no = u32_field(r)?,
            b"Payload" => payload = r.bytes_or_nil()?.map(<[u8]>::to_vec),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(AckResp { seq_no, payload })
}

/// Incarnation, Node, From: the shared shape of suspect and dead.
fn decode_accusation(r: &mut Reader) -> Result<(u32, String, String), WireError> {
    let (mut incarnation, mut node, mut from) = (0, String::new(), String::new());
    read_fields(r, |name, r| {
        match name {
            b"Incarnation" => incarnation = u32_field(r)?,
            b"Node" => node = r.string()?,
            b"From" => from = r.string()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok((incarnation, node, from))
}

/// Fields shared by alive and a push-pull node state (`Node` is `Name` in the latter).
#[derive(Default)]
struct NodeFields {
    incarnation: u32,
    name: String,
    addr: Option<IpAddr>,
    port: u16,
    meta: Vec<u8>,
    vsn: Option<Vsn>,
    state: Option<NodeState>,
    /// The name is not UTF-8 (Go strings are bytes): the caller decides what that costs.
    name_not_utf8: bool,
}

impl NodeFields {
    fn read(r: &mut Reader, name_key: &[u8]) -> Result<Self, WireError> {
        let mut n = NodeFields::default();
        read_fields(r, |key, r| {
            match key {
                b"Incarnation" => n.incarnation = u32_field(r)?,
                k if k == name_key => match std::str::from_utf8(r.bytes()?) {
                    Ok(name) => n.name = name.to_owned(),
                    Err(_) => n.name_not_utf8 = true,
                },
                b"Addr" => n.addr = Some(node_ip_from(r.bytes()?)?),
                b"Port" => n.port = u16_field(r)?,
                b"Meta" => n.meta = r.bytes()?.to_vec(),
                b"Vsn" => n.vsn = Some(vsn_from(r.bytes()?)?),
                b"State" if name_key == b"Name" => n.state = Some(state_from(r.uint()?)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(n)
    }
}

fn decode_alive(r: &mut Reader) -> Result<Alive, WireError> {
    let n = NodeFields::read(r, b"Node")?;
    if n.name_not_utf8 {
        return Err(WireError::Msgpack("node name is not valid UTF-8".into()));
    }
    Ok(Alive {
        incarnation: n.incarnation,
        node: n.name,
        addr: n.addr.ok_or_else(|| missing("Addr"))?,
        port: n.port,
        meta: n.meta,
        vsn: n.vsn.ok_or_else(|| missing("Vsn"))?,
    })
}

fn decode_push_pull(r: &mut Reader) -> Result<PushPull, WireError> {
    let (mut join, mut count, mut user_len) = (false, 0u64, 0u64);
    read_fields(r, |name, r| {
        match name {
            b"Join" => join = r.bool()?,
            b"Nodes" => count = r.uint()?,
            b"UserStateLen" => user_len = r.uint()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    // Each node state takes at least one byte, so the count is bounded by the input; push
    // entries one by one instead of trusting it for an allocation.
    if count > r.rest().len() as u64 {
        return Err(WireError::Truncated);
    }
    let (mut nodes, mut skipped) = (Vec::new(), 0);
    for _ in 0..count {
        let n = NodeFields::read(r, b"Name")?;
        // A name we cannot hold costs that entry only; Go would take it as bytes.
        if n.name_not_utf8 {
            skipped += 1;
            continue;
        }
        nodes.push(PushNodeState {
            name: n.name,
            addr: n.addr.ok_or_else(|| missing("Addr"))?,
            port: n.port,
            meta: n.meta,
            incarnation: n.incarnation,
            state: n.state.unwrap_or(NodeState::Alive),
            vsn: n.vsn.ok_or_else(|| missing("Vsn"))?,
        });
    }
    // wesher has no user state: check it is all there, then ignore it.
    if user_len > r.rest().len() as u64 {
        return Err(WireError::Truncated);
    }
    Ok(PushPull {
        join,
        nodes,
        skipped,
    })
}

/// Decodes one message (type byte + body). Trailing bytes after the body are ignored, as Go's
/// decoder ignores them.
pub fn decode_message(bytes: &[u8]) -> Result<Message, WireError> {
    let (&t, body) = bytes.split_first().ok_or(WireError::Truncated)?;
    let r = &mut Reader::new(body);
    Ok(match t {
        kind::PING => Message::Ping(decode_ping(r)?),
        kind::INDIRECT_PING => Message::IndirectPing(decode_indirect_ping(r)?),
        kind::ACK_RESP => Message::Ack(decode_ack(r)?),
        kind::NACK_RESP => {
            let mut seq_no = 0;
            read_fields(r, |name, r| {
                Ok(name == b"SeqNo" && {
                    seq_no = u32_field(r)?;
                    true
                })
            })?;
            Message::Nack(NackResp { seq_no })
        }
        kind::SUSPECT => {
            let (incarnation, node, from) = decode_accusation(r)?;
            Message::Suspect(Suspect {
                incarnation,
                node,
                from,
            })
        }
        kind::ALIVE => Message::Alive(decode_alive(r)?),
        kind::DEAD => {
            let (incarnation, node, from) = decode_accusation(r)?;
            Message::Dead(Dead {
                incarnation,
                node,
                from,
            })
        }
        kind::PUSH_PULL => Message::PushPull(decode_push_pull(r)?),
        kind::ERR_RESP => {
            let mut error = String::new();
            read_fields(r, |name, r| {
                Ok(name == b"Error" && {
                    error = r.string()?;
                    true
                })
            })?;
            Message::Err(ErrResp { error })
        }
        kind::USER => Message::User(body.to_vec()),
        t => return Err(WireError::UnknownType(t)),
    })
}
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn v4(a: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, a))
    }

    pub(crate) fn every_message() -> Vec<Message> {
        vec![
            Message::Ping(Ping {
                seq_no: 7,
                node: "b".into(),
                source_addr: Some(v4(1)),
                source_port: Some(7946),
                source_node: Some("a".into()),
            }),
            Message::Ping(Ping {
                seq_no: 8,
                node: "b".into(),
                source_addr: None,
                source_port: None,
                source_node: None,
            }),
            Message::IndirectPing(IndirectPing {
                seq_no: 70000,
                target: "fd00::1".parse().expect("literal"),
                port: 7946,
                node: "c".into(),
                nack: true,
                source_addr: Some(v4(1)),
                source_port: Some(1),
                source_node: Some("a".into()),
            }),
            Message::Ack(AckResp {
                seq_no: 9,
                payload: None,
            }),
            Message::Ack(AckResp {
                seq_no: 9,
                payload: Some(b"pong".to_vec()),
            }),
            Message::Nack(NackResp { seq_no: 10 }),
            Message::Suspect(Suspect {
                incarnation: 3,
                node: "c".into(),
                from: "a".into(),
            }),
            Message::Alive(Alive {
                incarnation: 1,
                node: "a".into(),
                addr: v4(1),
                port: 7946,
                meta: vec![],
                vsn: [1, 5, 2, 0, 0, 0],
            }),
            Message::Alive(Alive {
                incarnation: 2,
                node: "a".into(),
                addr: v4(1),
                port: 7946,
                meta: vec![0x42; 300],
                vsn: [1, 5, 2, 0, 0, 0],
            }),
            Message::Dead(Dead {
                incarnation: 4,
                node: "c".into(),
                from: "c".into(),
            }),
            Message::PushPull(PushPull {
                join: false,
                skipped: 0,
                nodes: (0..200)
                    .map(|i| PushNodeState {
                        name: format!("node{i}"),
                        addr: v4(i as u8),
                        port: 7946,
                        meta: vec![i as u8; 3],
                        incarnation: i,
                        state: [
                            NodeState::Alive,
                            NodeState::Suspect,
                            NodeState::Dead,
                            NodeState::Left,
                        ][i as usize % 4],
                        vsn: [1, 5, 2, 0, 0, 0],
                    })
                    .collect(),
            }),
            Message::Err(ErrResp {
                error: "boom".into(),
            }),
            Message::User(b"opaque".to_vec()),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for msg in every_message() {
            let bytes = encode_message(&msg);
            assert_eq!(decode_message(&bytes), Ok(msg.clone()), "{bytes:02x?}");
        }
    }

    #[test]
    fn push_pull_header_counts_nodes_as_go_int() {
        let Message::PushPull(pp) = &every_message()[10] else {
            panic!("fixture order changed");
        };
        let bytes = encode_message(&Message::PushPull(pp.clone()));
        // 06, fixmap 3, "Join" false, "Nodes" d1 00c8 (200 as Go int16), "UserStateLen" 0.
        let header = b"\x06\x83\xa4Join\xc2\xa5Nodes\xd1\x00\xc8\xacUserStateLen\x00";
        assert_eq!(&bytes[..header.len()], header);
    }

    #[test]
    fn ping_omits_empty_source_fields() {
        let bytes = encode_message(&every_message()[1]);
        assert_eq!(bytes, b"\x00\x82\xa4Node\xa1b\xa5SeqNo\x08");
    }

    #[test]
    fn decoder_takes_keys_in_any_order_and_skips_unknown_ones() {
        // dead with From/Node swapped, an unknown key holding a nested map, and str8 strings.
        let bytes = b"\x05\x84\xa4Node\xd9\x01x\xa5Extra\x81\xa1k\x92\x01\xc0\
                      \xa4From\xa1y\xabIncarnation\xcd\x01\x00";
        assert_eq!(
            decode_message(bytes),
            Ok(Message::Dead(Dead {
                incarnation: 256,
                node: "x".into(),
                from: "y".into(),
            }))
        );
    }

    #[test]
    fn decoder_rejects_bad_fields() {
        let kind_of = |b: &[u8]| decode_message(b).map_err(|e| e.kind());
        assert_eq!(kind_of(b""), Err("truncated"));
        assert_eq!(kind_of(b"\x2a\x80"), Err("unknown_type"));
        assert_eq!(kind_of(b"\x07\x00"), Err("unknown_type"));
        assert_eq!(
            kind_of(b"\x00\x81\xa5SeqNo\xcf\0\0\0\x01\0\0\0\0"),
            Err("msgpack")
        );
        assert_eq!(kind_of(b"\x00\x81\xa4Node\xa2\xff\xfe"), Err("msgpack"));
        assert_eq!(kind_of(b"\x00\x81\xa4Node\xa9abc"), Err("truncated"));
        assert_eq!(kind_of(b"\x00\x91\x01"), Err("msgpack"));
        // alive without an address, and with a 5-byte one
        assert_eq!(
            kind_of(b"\x04\x81\xa3Vsn\xa6\x01\x05\x02\0\0\0"),
            Err("msgpack")
        );
        assert_eq!(
            kind_of(b"\x04\x81\xa4Addr\xa5\x01\x02\x03\x04\x05"),
            Err("msgpack")
        );
        // push-pull claiming more nodes or user state than there are bytes
        assert_eq!(
            kind_of(b"\x06\x81\xa5Nodes\xce\xff\xff\xff\xff"),
            Err("truncated")
        );
        assert_eq!(
            kind_of(b"\x06\x81\xacUserStateLen\x05\x01"),
            Err("truncated")
        );
    }

    #[test]
    fn ipv4_in_16_byte_form_decodes_as_ipv4() {
        let mut mapped = vec![0u8; 10];
        mapped.extend_from_slice(&[0xff, 0xff, 10, 0, 0, 9]);
        assert_eq!(ip_from(&mapped, "Addr"), Ok(v4(9)));
    }

    #[test]
    fn node_addr_in_16_byte_form_is_relayed_in_16_byte_form() {
        let mut mapped = vec![0u8; 10];
        mapped.extend_from_slice(&[0xff, 0xff, 10, 0, 0, 9]);
        assert_eq!(node_ip_from(&mapped).map(|ip| ip.to_canonical()), Ok(v4(9)));
        let alive = Alive {
            incarnation: 1,
            node: "n".into(),
            addr: node_ip_from(&mapped).unwrap(),
            port: 7946,
            meta: vec![],
            vsn: [1, 5, 2, 0, 0, 0],
        };
        let bytes = encode_message(&Message::Alive(alive.clone()));
        assert!(bytes.windows(16).any(|w| w == mapped.as_slice()));
        assert_eq!(decode_message(&bytes), Ok(Message::Alive(alive)));
        assert_eq!(node_ip_from(&[10, 0, 0, 9]), Ok(v4(9)));
    }
}
