//! wesher: a WireGuard mesh manager speaking hashicorp memberlist's wire protocol.

pub mod agent;
pub mod base64;
pub mod config;
pub mod control;
pub mod fsutil;
pub mod hosts;
pub mod logging;
pub mod membership;
pub mod mesh;
pub mod netlink;
pub mod nodemeta;
pub mod overlay;
pub mod state;
pub mod transport;
pub mod wireguard;
