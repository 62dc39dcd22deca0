//! wesher: a WireGuard mesh manager speaking hashicorp memberlist's wire protocol.

pub mod base64;
pub mod membership;
pub mod nodemeta;
pub mod overlay;
