//! WireGuard device configuration through the kernel (generic netlink) or a userspace
//! daemon such as wireguard-go (the UAPI socket). Backends only apply what they are
//! told: a device setting, or per-peer changes. They never replace the whole peer list.

pub mod genl;
mod keys;
pub mod uapi;

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

pub use crate::netlink::Error;
pub use keys::{Key, KeyError, PrivateKey};

/// The device's own settings. The private key is borrowed: its one owner zeroizes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConfig<'a> {
    pub private_key: &'a PrivateKey,
    pub listen_port: u16,
}

/// The desired state of one peer. An upsert sets every field: allowed IPs replace the
/// peer's list, `None` keepalive turns it off; `None` endpoint keeps whatever the
/// device learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: Key,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<(IpAddr, u8)>,
    pub persistent_keepalive: Option<u16>,
}

/// One minimal change to the peer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChange {
    Upsert(PeerConfig),
    Remove(Key),
}

/// A peer as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub public_key: Key,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<(IpAddr, u8)>,
    /// `None` until the first handshake.
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub persistent_keepalive: Option<u16>,
}

/// The device as it reports itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    /// `None` while no private key is set.
    pub public_key: Option<Key>,
    pub listen_port: u16,
    pub peers: Vec<PeerStatus>,
}

/// How a WireGuard interface is configured.
pub enum Backend {
    Kernel(genl::Kernel),
    Userspace(uapi::Userspace),
}

impl Backend {
    /// The userspace daemon's socket when it exists and answers, else kernel netlink.
    pub fn open(ifname: &str) -> Result<Backend, Error> {
        match uapi::Userspace::open(ifname) {
            Ok(Some(userspace)) => Ok(Backend::Userspace(userspace)),
            Ok(None) => genl::Kernel::open(ifname).map(Backend::Kernel),
            Err(stale) => genl::Kernel::open(ifname)
                .map(Backend::Kernel)
                .map_err(|e| {
                    Error::new(
                        format!("opening WireGuard interface {ifname}"),
                        format!(
                            "the userspace socket failed ({stale}) and so did the kernel ({e})"
                        ),
                    )
                }),
        }
    }

    pub fn is_userspace(&self) -> bool {
        matches!(self, Backend::Userspace(_))
    }

    pub fn set_device(&mut self, config: &DeviceConfig) -> Result<(), Error> {
        match self {
            Backend::Kernel(k) => k.set_device(config),
            Backend::Userspace(u) => u.set_device(config),
        }
    }

    /// Applies peer changes in order; an empty list sends nothing.
    pub fn apply(&mut self, changes: &[PeerChange]) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        match self {
            Backend::Kernel(k) => k.apply(changes),
            Backend::Userspace(u) => u.apply(changes),
        }
    }

    pub fn device(&mut self) -> Result<DeviceStatus, Error> {
        match self {
            Backend::Kernel(k) => k.device(),
            Backend::Userspace(u) => u.device(),
        }
    }

    pub fn peers(&mut self) -> Result<Vec<PeerStatus>, Error> {
        Ok(self.device()?.peers)
    }
}
