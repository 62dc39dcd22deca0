//! memberlist-compatible gossip membership as a sans-IO state machine.

pub mod io;
pub mod keyring;
pub mod message;
mod msgpack;
pub mod wire;
