//! The boundary between the sans-IO membership core and whatever moves its bytes: the real
//! socket driver (`transport`) or the in-process simulated network (`sim`).

use std::net::SocketAddr;

/// A TCP stream, named by whoever opened it: the core opens `Outgoing` streams (join, push-pull,
/// fallback ping), the driver accepts `Incoming` ones. The two counters are independent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamId {
    Outgoing(u64),
    Incoming(u64),
}

/// What the core asks the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// Send one UDP datagram (already framed and encrypted).
    Datagram { to: SocketAddr, bytes: Vec<u8> },
    /// Open a TCP connection; the driver answers with `Input::Connected` or `Input::StreamClosed`.
    Connect { id: StreamId, to: SocketAddr },
    /// Queue bytes on a stream (already framed and encrypted).
    StreamSend { id: StreamId, bytes: Vec<u8> },
    /// Close a stream after its queued bytes are flushed. No further input arrives for it.
    StreamClose { id: StreamId },
}

/// What the driver feeds the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Datagram {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// A peer connected to our TCP listener.
    Accepted {
        id: StreamId,
        from: SocketAddr,
    },
    /// An outgoing `Connect` succeeded.
    Connected {
        id: StreamId,
    },
    /// Bytes read from a stream, in order.
    StreamData {
        id: StreamId,
        bytes: Vec<u8>,
    },
    /// The stream ended: peer closed, connect failed, or an I/O error. Final for that id.
    StreamClosed {
        id: StreamId,
    },
}
