//! memberlist messages as plain structs; `wire` encodes and decodes them.
//!
//! Field names follow memberlist's Go structs, which are the msgpack map keys on the wire.

use std::net::IpAddr;

/// Message type bytes (the first byte of every message).
pub mod kind {
    pub const PING: u8 = 0;
    pub const INDIRECT_PING: u8 = 1;
    pub const ACK_RESP: u8 = 2;
    pub const SUSPECT: u8 = 3;
    pub const ALIVE: u8 = 4;
    pub const DEAD: u8 = 5;
    pub const PUSH_PULL: u8 = 6;
    pub const COMPOUND: u8 = 7;
    pub const USER: u8 = 8;
    pub const COMPRESS: u8 = 9;
    pub const ENCRYPT: u8 = 10;
    pub const NACK_RESP: u8 = 11;
    pub const HAS_CRC: u8 = 12;
    pub const ERR_RESP: u8 = 13;
    pub const HAS_LABEL: u8 = 244;
}

/// The 6-byte version vector every node advertises: protocol min/max/current, delegate min/max/current.
pub type Vsn = [u8; 6];

/// What wesher nodes advertise: protocol 1..=5, speaking 2; no delegate protocol.
pub const WESHER_VSN: Vsn = [1, 5, 2, 0, 0, 0];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    pub seq_no: u32,
    /// Name of the node the ping is meant for (a receiver with another name ignores it).
    pub node: String,
    pub source_addr: Option<IpAddr>,
    pub source_port: Option<u16>,
    pub source_node: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndirectPing {
    pub seq_no: u32,
    pub target: IpAddr,
    pub port: u16,
    pub node: String,
    pub nack: bool,
    pub source_addr: Option<IpAddr>,
    pub source_port: Option<u16>,
    pub source_node: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckResp {
    pub seq_no: u32,
    /// Go sends nil (None) for wesher; a payload is accepted and ignored.
    pub payload: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NackResp {
    pub seq_no: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspect {
    pub incarnation: u32,
    pub node: String,
    pub from: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alive {
    pub incarnation: u32,
    pub node: String,
    pub addr: IpAddr,
    pub port: u16,
    pub meta: Vec<u8>,
    pub vsn: Vsn,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dead {
    pub incarnation: u32,
    pub node: String,
    /// `from == node` means a graceful leave.
    pub from: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrResp {
    pub error: String,
}

/// State of a member as carried in push-pull (memberlist's NodeStateType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Alive = 0,
    Suspect = 1,
    Dead = 2,
    Left = 3,
}

/// One member in a push-pull exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushNodeState {
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub meta: Vec<u8>,
    pub incarnation: u32,
    pub state: NodeState,
    pub vsn: Vsn,
}

/// A whole push-pull message (header + states; wesher has no user state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushPull {
    pub join: bool,
    pub nodes: Vec<PushNodeState>,
    /// Entries received but not kept (a name that is not UTF-8); never sent.
    pub skipped: usize,
}

/// A single decoded protocol message. Framing (compound, compress, CRC, label, encryption) is
/// handled by `wire` and never appears here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Ping(Ping),
    IndirectPing(IndirectPing),
    Ack(AckResp),
    Nack(NackResp),
    Suspect(Suspect),
    Alive(Alive),
    Dead(Dead),
    PushPull(PushPull),
    Err(ErrResp),
    /// A user message (type 8): wesher has no use for it; kept so it can be counted and dropped.
    User(Vec<u8>),
}
