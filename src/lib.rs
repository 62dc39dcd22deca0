//! wesher: a WireGuard mesh manager speaking hashicorp memberlist's wire protocol.

pub mod membership;
pub mod transport;
