//! memberlist's wire format: messages (a type byte and a go-msgpack map), UDP packet framing
//! (label, encryption, CRC, compression, compound) and encrypted TCP stream frames.
//!
//! Encoding is byte-identical to Go memberlist 0.5.x; decoding accepts anything Go would send and
//! rejects the rest with a [`WireError`], allocating no more than the input (or a fixed cap for
//! decompression) justifies.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use weezl::{decode::Decoder, encode::Encoder, BitOrder, LzwStatus};

use super::message::{
    kind, AckResp, Alive, Dead, ErrResp, IndirectPing, Message, NackResp, NodeState, Ping,
    PushNodeState, PushPull, Suspect, Vsn,
};
use super::msgpack::{Reader, Writer};

pub use super::keyring::{
    decrypt, encrypt, Key, Keyring, KeyringError, Nonces, ENCRYPTION_OVERHEAD,
};

/// Bytes a CRC header adds (`0c` + CRC32).
pub const CRC_OVERHEAD: usize = 5;
/// Fixed bytes of a compound message (`07` + part count).
pub const COMPOUND_HEADER_OVERHEAD: usize = 2;
/// Bytes each compound part adds (its u16 length).
pub const COMPOUND_ENTRY_OVERHEAD: usize = 2;
/// Most parts one compound message can carry.
pub const MAX_COMPOUND_PARTS: usize = 255;
/// Largest encrypted stream frame (and decompressed stream message) accepted: memberlist's
/// maxPushStateBytes.
pub const MAX_PUSH_STATE_BYTES: usize = 20 * 1024 * 1024;
/// Most bytes decompression may produce for one UDP packet, all nesting levels together.
/// Go only compresses what fits its 1400-byte UDP buffer, so 64 KiB is generous.
pub const MAX_PACKET_DECOMPRESSED: usize = 64 * 1024;
/// Header bytes of a stream frame before the encrypted payload (`0a` + u32 length).
pub const STREAM_HEADER: usize = 5;

/// Deepest compound/compress nesting accepted in one packet.
const MAX_NESTING: usize = 8;

/// Why bytes from the network were rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The input ended early, or a declared length exceeds the remaining input.
    Truncated,
    /// A declared or decompressed size exceeds its cap.
    TooLarge { size: usize, limit: usize },
    /// Malformed msgpack, or a field with an impossible value.
    Msgpack(String),
    /// A message type byte we do not know (or framing where a message belongs).
    UnknownType(u8),
    /// No installed key authenticated the payload.
    Decrypt,
    /// Encryption version other than 0 or 1.
    EncryptionVersion(u8),
    /// Bad PKCS#7 padding in a version-0 payload.
    Padding,
    /// A stream that does not start with an encrypted frame (plaintext is refused).
    Unencrypted(u8),
    /// CRC mismatch.
    Crc { expected: u32, actual: u32 },
    /// Unknown compression algorithm or corrupt LZW data.
    Lzw(String),
    /// An empty label header.
    Label,
    /// Compound/compress nested deeper than we follow.
    Nesting,
}

impl WireError {
    /// A short stable name for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::TooLarge { .. } => "too_large",
            WireError::Msgpack(_) => "msgpack",
            WireError::UnknownType(_) => "unknown_type",
            WireError::Decrypt | WireError::EncryptionVersion(_) | WireError::Padding => "decrypt",
            WireError::Unencrypted(_) => "unencrypted",
            WireError::Crc { .. } => "crc",
            WireError::Lzw(_) => "lzw",
            WireError::Label => "label",
            WireError::Nesting => "nesting",
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("message truncated"),
            WireError::TooLarge { size, limit } => {
                write!(f, "size {size} exceeds the limit of {limit} bytes")
            }
            WireError::Msgpack(what) => write!(f, "bad msgpack: {what}"),
            WireError::UnknownType(t) => write!(f, "unknown message type {t}"),
            WireError::Decrypt => f.write_str("no installed keys could decrypt the message"),
            WireError::EncryptionVersion(v) => write!(f, "unsupported encryption version {v}"),
            WireError::Padding => f.write_str("bad PKCS#7 padding"),
            WireError::Unencrypted(t) => {
                write!(f, "stream is not encrypted (starts with type {t})")
            }
            WireError::Crc { expected, actual } => {
                write!(
                    f,
                    "CRC mismatch: header {expected:08x}, payload {actual:08x}"
                )
            }
            WireError::Lzw(what) => write!(f, "decompression failed: {what}"),
            WireError::Label => f.write_str("empty label header"),
            WireError::Nesting => write!(f, "framing nested deeper than {MAX_NESTING} levels"),
        }
    }
}

impl std::error::Error for WireError {}

// ---------------------------------------------------------------------------------------------
// Messages

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

/// Writes a Go struct's fields in go-msgpack's order (alphabetical by field name), leaving out
/// `omitempty` fields that are empty.
struct Fields<'a> {
    w: Writer<'a>,
}

impl<'a> Fields<'a> {
    fn start(out: &'a mut Vec<u8>, count: usize) -> Self {
        let mut w = Writer::new(out);
        w.map(count as u8);
        Fields { w }
    }
    fn raw(&mut self, name: &str, v: &[u8]) -> &mut Self {
        self.w.key(name);
        self.w.raw(v);
        self
    }
    fn bytes_or_nil(&mut self, name: &str, v: &[u8]) -> &mut Self {
        self.w.key(name);
        self.w.bytes_or_nil(v);
        self
    }
    fn uint(&mut self, name: &str, v: u64) -> &mut Self {
        self.w.key(name);
        self.w.uint(v);
        self
    }
    fn int(&mut self, name: &str, v: u64) -> &mut Self {
        self.w.key(name);
        self.w.int(v);
        self
    }
    fn bool(&mut self, name: &str, v: bool) -> &mut Self {
        self.w.key(name);
        self.w.bool(v);
        self
    }
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

/// Calls `field(name, reader)` for each map entry; entries it does not take (returns false)
/// are skipped, as Go skips unknown fields.
fn read_fields<'a>(
    r: &mut Reader<'a>,
    mut field: impl FnMut(&[u8], &mut Reader<'a>) -> Result<bool, WireError>,
) -> Result<(), WireError> {
    for _ in 0..r.map()? {
        let name = r.bytes()?;
        if !field(name, r)? {
            r.skip()?;
        }
    }
    Ok(())
}

fn u32_field(r: &mut Reader) -> Result<u32, WireError> {
    Ok(r.uint_max(u32::MAX.into())? as u32)
}

fn u16_field(r: &mut Reader) -> Result<u16, WireError> {
    Ok(r.uint_max(u16::MAX.into())? as u16)
}

fn missing(what: &str) -> WireError {
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
}

impl NodeFields {
    fn read(r: &mut Reader, name_key: &[u8]) -> Result<Self, WireError> {
        let mut n = NodeFields::default();
        read_fields(r, |key, r| {
            match key {
                b"Incarnation" => n.incarnation = u32_field(r)?,
                k if k == name_key => n.name = r.string()?,
                b"Addr" => n.addr = Some(ip_from(r.bytes()?, "Addr")?),
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
    let mut nodes = Vec::new();
    for _ in 0..count {
        let n = NodeFields::read(r, b"Name")?;
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
    Ok(PushPull { join, nodes })
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

// ---------------------------------------------------------------------------------------------
// Framing

/// Go compress/lzw with LSB bit order and 8-bit literals.
pub fn lzw_compress(data: &[u8]) -> Vec<u8> {
    Encoder::new(BitOrder::Lsb, 8)
        .encode(data)
        // Only codes >= 2^size are invalid input, and with size 8 every byte is a valid code.
        .expect("8-bit LZW accepts every byte")
}

/// Inverse of [`lzw_compress`]; fails when the output would exceed `limit` or the data has no
/// end code.
pub fn lzw_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, WireError> {
    let mut decoder = Decoder::new(BitOrder::Lsb, 8);
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut input = data;
    loop {
        let res = decoder.decode_bytes(input, &mut chunk);
        input = input.get(res.consumed_in..).unwrap_or(&[]);
        let size = out.len() + res.consumed_out;
        if size > limit {
            return Err(WireError::TooLarge { size, limit });
        }
        out.extend_from_slice(&chunk[..res.consumed_out]);
        match res.status {
            Ok(LzwStatus::Done) => return Ok(out),
            Ok(LzwStatus::Ok) if res.consumed_in > 0 || res.consumed_out > 0 => {}
            Ok(_) => return Err(WireError::Lzw("missing end code".into())),
            Err(e) => return Err(WireError::Lzw(e.to_string())),
        }
    }
}

/// Wraps a payload in a compress message: `09 {Algo: 0, Buf: LZW(payload)}`.
pub fn compress(payload: &[u8]) -> Vec<u8> {
    let buf = lzw_compress(payload);
    let mut out = Vec::with_capacity(buf.len() + 16);
    out.push(kind::COMPRESS);
    Fields::start(&mut out, 2).uint("Algo", 0).raw("Buf", &buf);
    out
}

/// Unwraps a compress message body (after its type byte).
fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, WireError> {
    let (mut algo, mut buf) = (0, None);
    read_fields(&mut Reader::new(body), |name, r| {
        match name {
            b"Algo" => algo = r.uint()?,
            b"Buf" => buf = Some(r.bytes()?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if algo != 0 {
        return Err(WireError::Lzw(format!(
            "unknown compression algorithm {algo}"
        )));
    }
    lzw_decompress(buf.ok_or_else(|| missing("Buf"))?, limit)
}

/// Builds a compound message: `07 | n | n x u16 BE length | parts`. More than 255 parts are
/// split into compounds nested in a compound (receivers recurse). Each part must be shorter
/// than 64 KiB, which UDP packets are.
pub fn compound(msgs: &[Vec<u8>]) -> Vec<u8> {
    if msgs.len() > MAX_COMPOUND_PARTS {
        let chunks: Vec<Vec<u8>> = msgs.chunks(MAX_COMPOUND_PARTS).map(compound).collect();
        return compound(&chunks);
    }
    let body: usize = msgs.iter().map(Vec::len).sum();
    let mut out =
        Vec::with_capacity(COMPOUND_HEADER_OVERHEAD + COMPOUND_ENTRY_OVERHEAD * msgs.len() + body);
    out.push(kind::COMPOUND);
    out.push(msgs.len() as u8);
    for m in msgs {
        debug_assert!(m.len() <= usize::from(u16::MAX));
        out.extend_from_slice(&(m.len() as u16).to_be_bytes());
    }
    for m in msgs {
        out.extend_from_slice(m);
    }
    out
}

/// Splits a compound body (after its type byte) into its parts.
fn compound_parts(body: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    let (&n, rest) = body.split_first().ok_or(WireError::Truncated)?;
    let n = usize::from(n);
    let lens = rest.get(..2 * n).ok_or(WireError::Truncated)?;
    let mut data = &rest[2 * n..];
    let mut parts = Vec::with_capacity(n);
    for len in lens.chunks_exact(2) {
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let part = data.get(..len).ok_or(WireError::Truncated)?;
        parts.push(part);
        data = &data[len..];
    }
    Ok(parts)
}

/// Prefixes a payload with a CRC header: `0c | CRC32-IEEE BE | payload`.
pub fn with_crc(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CRC_OVERHEAD + payload.len());
    out.push(kind::HAS_CRC);
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks and strips a CRC header if there is one (Go only looks at the outermost layer).
fn strip_crc(buf: &[u8]) -> Result<&[u8], WireError> {
    if buf.first() != Some(&kind::HAS_CRC) {
        return Ok(buf);
    }
    let header = buf.get(1..CRC_OVERHEAD).ok_or(WireError::Truncated)?;
    let expected = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let payload = &buf[CRC_OVERHEAD..];
    let actual = crc32fast::hash(payload);
    if expected != actual {
        return Err(WireError::Crc { expected, actual });
    }
    Ok(payload)
}

/// A label (empty when there is none) and what follows it.
type Labelled<'a> = (&'a [u8], &'a [u8]);

/// Strips a label header (`f4 | len | label`), returning the label (AAD for decryption).
/// `Ok(None)` when `buf` is too short to tell.
fn split_label(buf: &[u8]) -> Result<Option<Labelled<'_>>, WireError> {
    if buf.first() != Some(&kind::HAS_LABEL) {
        return Ok(Some((&[], buf)));
    }
    let Some(&len) = buf.get(1) else {
        return Ok(None);
    };
    if len == 0 {
        return Err(WireError::Label);
    }
    let end = 2 + usize::from(len);
    Ok(buf.get(2..end).map(|label| (label, &buf[end..])))
}

/// How [`seal_packet`] frames a datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketOpts {
    /// Add a CRC header (the target's protocol max is >= 5).
    pub crc: bool,
    /// LZW-compress when that makes the packet smaller.
    pub compress: bool,
}

/// Frames encoded messages into one encrypted UDP datagram: a single message as is, several
/// as a compound; compressed if that is smaller; CRC if asked; encrypted with the primary key.
pub fn seal_packet(
    msgs: &[Vec<u8>],
    opts: PacketOpts,
    keyring: &Keyring,
    nonces: &mut Nonces,
) -> Vec<u8> {
    let mut payload = match msgs {
        [one] => one.clone(),
        _ => compound(msgs),
    };
    if opts.compress {
        let packed = compress(&payload);
        if packed.len() < payload.len() {
            payload = packed;
        }
    }
    if opts.crc {
        payload = with_crc(&payload);
    }
    encrypt(keyring.primary(), nonces.next_nonce(), &payload, &[])
}

/// Opens a UDP datagram: label, decryption (any installed key; plaintext is refused), CRC,
/// then compress and compound layers, nested. Returns the messages in order; any bad part
/// rejects the whole packet.
pub fn open_packet(bytes: &[u8], keyring: &Keyring) -> Result<Vec<Message>, WireError> {
    let (label, rest) = split_label(bytes)?.ok_or(WireError::Truncated)?;
    let plain = decrypt(keyring, rest, label)?;
    let mut msgs = Vec::new();
    let mut budget = MAX_PACKET_DECOMPRESSED;
    unframe(strip_crc(&plain)?, 0, &mut budget, &mut msgs)?;
    Ok(msgs)
}

/// Unwraps compound and compress layers down to messages.
fn unframe(
    buf: &[u8],
    depth: usize,
    budget: &mut usize,
    out: &mut Vec<Message>,
) -> Result<(), WireError> {
    if depth > MAX_NESTING {
        return Err(WireError::Nesting);
    }
    match buf.split_first() {
        Some((&kind::COMPOUND, body)) => {
            for part in compound_parts(body)? {
                unframe(part, depth + 1, budget, out)?;
            }
        }
        Some((&kind::COMPRESS, body)) => {
            let inner = decompress(body, *budget).map_err(|e| match e {
                WireError::TooLarge { size, .. } => WireError::TooLarge {
                    size,
                    limit: MAX_PACKET_DECOMPRESSED,
                },
                e => e,
            })?;
            *budget -= inner.len();
            unframe(&inner, depth + 1, budget, out)?;
        }
        _ => out.push(decode_message(buf)?),
    }
    Ok(())
}

/// Frames one encoded message for a TCP stream: LZW-compressed (always, as Go does), then
/// `0a | u32 BE length | encrypted payload` with the first five bytes as AAD.
pub fn seal_stream(msg: &[u8], keyring: &Keyring, nonces: &mut Nonces) -> Vec<u8> {
    let plain = compress(msg);
    let len = (ENCRYPTION_OVERHEAD + plain.len()) as u32;
    let mut header = [0u8; STREAM_HEADER];
    header[0] = kind::ENCRYPT;
    header[1..].copy_from_slice(&len.to_be_bytes());
    let sealed = encrypt(keyring.primary(), nonces.next_nonce(), &plain, &header);
    let mut out = Vec::with_capacity(STREAM_HEADER + sealed.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&sealed);
    out
}

/// Parses one message from the start of a TCP stream buffer. `Ok(None)`: more bytes are
/// needed; `Ok(Some((msg, n)))`: `n` bytes were consumed. A label header is accepted and
/// authenticated; frames above [`MAX_PUSH_STATE_BYTES`] and unencrypted streams are refused.
pub fn open_stream(buf: &[u8], keyring: &Keyring) -> Result<Option<(Message, usize)>, WireError> {
    let Some((label, frame)) = split_label(buf)? else {
        return Ok(None);
    };
    let start = buf.len() - frame.len();
    match frame.first() {
        None => return Ok(None),
        Some(&kind::ENCRYPT) => {}
        Some(&t) => return Err(WireError::Unencrypted(t)),
    }
    let Some(header) = frame.get(..STREAM_HEADER) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_PUSH_STATE_BYTES {
        return Err(WireError::TooLarge {
            size: len,
            limit: MAX_PUSH_STATE_BYTES,
        });
    }
    let Some(payload) = frame.get(STREAM_HEADER..STREAM_HEADER + len) else {
        return Ok(None);
    };
    let mut aad = header.to_vec();
    aad.extend_from_slice(label);
    let plain = decrypt(keyring, payload, &aad)?;
    let msg = match plain.split_first() {
        Some((&kind::COMPRESS, body)) => decode_message(&decompress(body, MAX_PUSH_STATE_BYTES)?)?,
        _ => decode_message(&plain)?,
    };
    Ok(Some((msg, start + STREAM_HEADER + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::new([0x11; 32])
    }

    fn v4(a: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, a))
    }

    fn every_message() -> Vec<Message> {
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
    fn lzw_round_trip_and_limits() {
        let data: Vec<u8> = (0..20000u32)
            .map(|i| (i % 251) as u8 ^ (i / 97) as u8)
            .collect();
        let packed = lzw_compress(&data);
        assert_eq!(lzw_decompress(&packed, data.len()), Ok(data.clone()));
        assert_eq!(
            lzw_decompress(&packed, data.len() - 1).map_err(|e| e.kind()),
            Err("too_large")
        );
        assert_eq!(
            lzw_decompress(&packed[..packed.len() / 2], usize::MAX).map_err(|e| e.kind()),
            Err("lzw")
        );
        assert_eq!(lzw_decompress(&lzw_compress(b""), 0), Ok(vec![]));
    }

    #[test]
    fn packet_round_trip_through_every_layer() {
        let msgs: Vec<Vec<u8>> = every_message()[..10].iter().map(encode_message).collect();
        let mut nonces = Nonces::new(1);
        for opts in [
            PacketOpts::default(),
            PacketOpts {
                crc: true,
                compress: true,
            },
        ] {
            let packet = seal_packet(&msgs, opts, &ring(), &mut nonces);
            assert_eq!(
                open_packet(&packet, &ring()),
                Ok(every_message()[..10].to_vec())
            );
            let single = seal_packet(&msgs[..1], opts, &ring(), &mut nonces);
            assert_eq!(
                open_packet(&single, &ring()),
                Ok(every_message()[..1].to_vec())
            );
        }
    }

    #[test]
    fn compression_only_when_smaller() {
        let msgs = vec![encode_message(&every_message()[3])];
        let opts = PacketOpts {
            crc: false,
            compress: true,
        };
        let packet = seal_packet(&msgs, opts, &ring(), &mut Nonces::new(1));
        assert_eq!(packet.len(), ENCRYPTION_OVERHEAD + msgs[0].len());
    }

    #[test]
    fn more_than_255_parts_nest() {
        let msgs: Vec<Vec<u8>> = (0..600)
            .map(|i| encode_message(&Message::Nack(NackResp { seq_no: i })))
            .collect();
        let packet = seal_packet(&msgs, PacketOpts::default(), &ring(), &mut Nonces::new(3));
        let opened = open_packet(&packet, &ring()).expect("valid packet");
        assert_eq!(opened.len(), 600);
        assert_eq!(opened[599], Message::Nack(NackResp { seq_no: 599 }));
    }

    fn sealed(plain: &[u8]) -> Vec<u8> {
        encrypt(ring().primary(), [9; 12], plain, b"")
    }

    #[test]
    fn packet_framing_errors_have_kinds() {
        let kind_of = |plain: &[u8]| open_packet(&sealed(plain), &ring()).map_err(|e| e.kind());
        let ack = encode_message(&every_message()[3]);
        let mut bad_crc = with_crc(&ack);
        bad_crc[1] ^= 1;
        assert_eq!(kind_of(&bad_crc), Err("crc"));
        assert_eq!(kind_of(&with_crc(&ack)[..4]), Err("truncated"));
        assert_eq!(kind_of(b"\x07\x02\x00\x01"), Err("truncated"));
        assert_eq!(kind_of(b"\x07\x01\x00\x05\x0b\x80"), Err("truncated"));
        assert_eq!(kind_of(b"\x09\x82\xa4Algo\x01\xa3Buf\xa0"), Err("lzw"));
        assert_eq!(
            kind_of(b"\x09\x82\xa4Algo\x00\xa3Buf\xa2\x00\x01"),
            Err("lzw")
        );
        assert_eq!(open_packet(&sealed(b"\x07\x00"), &ring()), Ok(vec![]));
        let mut nested = encode_message(&every_message()[3]);
        for _ in 0..=MAX_NESTING {
            nested = compound(&[nested]);
        }
        assert_eq!(kind_of(&nested), Err("nesting"));
        let bomb = compress(&vec![0u8; MAX_PACKET_DECOMPRESSED + 1]);
        assert!(bomb.len() < 1400);
        assert_eq!(kind_of(&bomb), Err("too_large"));
        let mut labelled = vec![kind::HAS_LABEL, 0];
        labelled.extend_from_slice(&sealed(&ack));
        assert_eq!(
            open_packet(&labelled, &ring()).map_err(|e| e.kind()),
            Err("label")
        );
    }

    #[test]
    fn labelled_packet_is_accepted_with_the_label_as_aad() {
        let ack = encode_message(&every_message()[3]);
        let mut packet = vec![kind::HAS_LABEL, 3];
        packet.extend_from_slice(b"lab");
        packet.extend_from_slice(&encrypt(ring().primary(), [2; 12], &ack, b"lab"));
        assert_eq!(
            open_packet(&packet, &ring()),
            Ok(vec![every_message()[3].clone()])
        );
        packet[3] = b'X';
        assert_eq!(open_packet(&packet, &ring()), Err(WireError::Decrypt));
    }

    #[test]
    fn stream_round_trip_and_incremental_parsing() {
        let msg = every_message()[10].clone();
        let mut nonces = Nonces::new(5);
        let frame = seal_stream(&encode_message(&msg), &ring(), &mut nonces);
        assert_eq!(frame[0], kind::ENCRYPT);
        for cut in [0, 1, 4, 5, 6, frame.len() - 1] {
            assert_eq!(
                open_stream(&frame[..cut], &ring()),
                Ok(None),
                "cut at {cut}"
            );
        }
        let mut two = frame.clone();
        let ping = every_message()[0].clone();
        two.extend_from_slice(&seal_stream(&encode_message(&ping), &ring(), &mut nonces));
        let (first, used) = open_stream(&two, &ring())
            .expect("valid")
            .expect("complete");
        assert_eq!((first, used), (msg, frame.len()));
        let (second, rest) = open_stream(&two[used..], &ring())
            .expect("valid")
            .expect("complete");
        assert_eq!((second, rest), (ping, two.len() - used));
    }

    #[test]
    fn stream_errors_have_kinds() {
        let kind_of = |b: &[u8]| open_stream(b, &ring()).map_err(|e| e.kind());
        assert_eq!(kind_of(b"\x06\x83"), Err("unencrypted"));
        assert_eq!(kind_of(b"\x0a\x01\x40\x00\x01"), Err("too_large"));
        let mut frame = seal_stream(
            &encode_message(&every_message()[3]),
            &ring(),
            &mut Nonces::new(1),
        );
        let last = frame.len() - 1;
        frame[last] ^= 0x80;
        assert_eq!(kind_of(&frame), Err("decrypt"));
        // The length is authenticated too: a frame re-labelled with another length fails.
        let mut frame = seal_stream(
            &encode_message(&every_message()[3]),
            &ring(),
            &mut Nonces::new(1),
        );
        frame.push(0);
        frame[4] += 1;
        assert_eq!(kind_of(&frame), Err("decrypt"));
    }
}
