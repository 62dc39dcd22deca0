//! wesher: a WireGuard mesh manager speaking hashicorp memberlist's wire protocol.

pub mod agent;
pub mod base64;
pub mod config;
pub mod control;
pub mod desired;
pub mod fsutil;
pub mod gob;
pub mod hosts;
pub mod join;
pub mod logging;
pub mod membership;
pub mod mesh;
pub mod meta;
pub mod netlink;
pub mod nodemeta;
pub mod overlay;
pub mod persist;
pub mod reconcile;
pub mod resolver;
pub mod rtnotify;
pub mod state;
pub mod system;
pub mod transport;
pub mod wireguard;
