//! memberlist-compatible gossip membership as a sans-IO state machine.

pub mod io;
pub mod message;
