//! The system side of the mesh: reads back what the kernel and the WireGuard daemon hold (the
//! observed state) and applies the changes `reconcile::plan` asks for. It decides nothing.

use std::net::SocketAddr;

use log::{info, warn};

use crate::netlink::{self, Netlink};
use crate::reconcile::{Change, Desired, LinkState, Net, Observed};
use crate::wireguard::{Backend, DeviceConfig, Error, Key, PeerChange, PrivateKey};

pub struct System {
    pub iface: String,
    rtnl: Netlink,
    wg: Option<Backend>,
    /// The link's index as last seen (it changes when the link is created again).
    index: Option<u32>,
    /// The one long-lived copy of the private key.
    private_key: PrivateKey,
    /// A userspace daemon made the link: when it is gone, the daemon (restarted by its service
    /// manager) makes it again; we cannot.
    userspace: bool,
    /// The endpoint we last set for each peer (see `reconcile::plan`).
    endpoints: Vec<(Key, SocketAddr)>,
    /// Routes refused by the kernel because one to the same destination exists that is not
    /// ours: left alone, and logged once.
    conflicts: Vec<Net>,
    /// Whether "waiting for the daemon" was logged since the link was last seen.
    waiting_logged: bool,
    /// The device was (re)configured from scratch: its peers still hold sessions with our
    /// old device, which they would keep using for ~15 s; a keepalive from us starts new ones.
    fresh: bool,
}

/// Turning a persistent keepalive on makes WireGuard (kernel and wireguard-go) send one at once.
const KICK_KEEPALIVE: u16 = 25;

impl System {
    pub fn new(
        iface: &str,
        rtnl: Netlink,
        wg: Backend,
        index: u32,
        private_key: PrivateKey,
    ) -> System {
        System {
            iface: iface.to_string(),
            userspace: wg.is_userspace(),
            rtnl,
            wg: Some(wg),
            index: Some(index),
            private_key,
            endpoints: Vec::new(),
            conflicts: Vec::new(),
            waiting_logged: false,
            fresh: false,
        }
    }

    pub fn rtnl(&mut self) -> &mut Netlink {
        &mut self.rtnl
    }

    pub fn private_key(&self) -> &PrivateKey {
        &self.private_key
    }

    pub fn index(&self) -> Option<u32> {
        self.index
    }

    /// The WireGuard backend, opened again if it was lost.
    pub fn wg(&mut self) -> Result<&mut Backend, Error> {
        open_backend(&mut self.wg, &self.iface)
    }

    /// Routes the kernel refused because they are someone else's are not wanted again.
    pub fn drop_conflicts(&mut self, desired: &mut Desired) {
        self.conflicts.retain(|n| desired.routes.contains(n));
        desired.routes.retain(|n| !self.conflicts.contains(n));
    }

    /// What the system holds now.
    pub fn observe(&mut self) -> Result<Observed, Error> {
        let Some(link) = self.rtnl.link(&self.iface)? else {
            self.index = None;
            self.wg = None;
            return Ok(Observed::default());
        };
        if self.index != Some(link.index) {
            // A new link: a new daemon, or a new kernel device; nothing of ours is on it.
            self.index = Some(link.index);
            self.wg = None;
            self.endpoints.clear();
            self.waiting_logged = false;
        }
        let mut observed = Observed {
            link: Some(LinkState {
                index: link.index,
                mtu: link.mtu,
                up: link.up,
            }),
            addresses: self
                .rtnl
                .addresses(Some(link.index))?
                .iter()
                .filter(|a| !netlink::is_link_local(a.addr))
                .map(|a| (a.addr, a.prefix_len))
                .collect(),
            routes: self
                .rtnl
                .routes(link.index)?
                .iter()
                .map(|r| (r.dst, r.prefix_len))
                .collect(),
            ..Observed::default()
        };
        match self.wg().and_then(Backend::device) {
            Ok(device) => {
                observed.device = Some((device.public_key, device.listen_port));
                observed.peers = device.peers;
            }
            Err(e) => {
                // A daemon that is starting has its link before its socket.
                self.wg = None;
                if !self.waiting_logged {
                    self.waiting_logged = true;
                    info!("WireGuard device {} not ready yet: {e}", self.iface);
                }
            }
        }
        Ok(observed)
    }

    /// Applies changes in order; stops at the first failure (the next round tries again).
    pub fn apply(&mut self, desired: &Desired, changes: &[Change]) -> Result<(), Error> {
        for change in changes {
            self.apply_one(desired, change)?;
        }
        Ok(())
    }

    fn apply_one(&mut self, desired: &Desired, change: &Change) -> Result<(), Error> {
        let index = || {
            self.index
                .ok_or_else(|| Error::new(format!("configuring {}", self.iface), "no link"))
        };
        match change {
            Change::CreateLink if self.userspace => {
                if !self.waiting_logged {
                    self.waiting_logged = true;
                    warn!(
                        "interface {} is gone; waiting for its WireGuard daemon to create it again",
                        self.iface
                    );
                }
                Ok(())
            }
            Change::CreateLink => {
                let link = self.rtnl.create_wireguard(&self.iface)?;
                info!("interface {} created again", self.iface);
                self.index = Some(link.index);
                self.wg = None;
                self.endpoints.clear();
                Ok(())
            }
            Change::SetDevice => {
                let config = DeviceConfig {
                    private_key: &self.private_key,
                    listen_port: desired.listen_port,
                };
                open_backend(&mut self.wg, &self.iface)?.set_device(&config)?;
                self.fresh = true;
                Ok(())
            }
            Change::SetMtuUp => {
                let i = index()?;
                self.rtnl.set_mtu_up(i, desired.mtu)
            }
            Change::AddAddress((ip, len)) => {
                let i = index()?;
                self.rtnl.add_address(i, *ip, *len)
            }
            Change::DelAddress((ip, len)) => {
                let i = index()?;
                self.rtnl.del_address(i, *ip, *len)
            }
            Change::Peers(peers) => {
                if std::mem::take(&mut self.fresh) {
                    let kick: Vec<PeerChange> = peers
                        .iter()
                        .filter_map(|p| match p {
                            PeerChange::Upsert(c) if c.persistent_keepalive.is_none() => {
                                let mut c = c.clone();
                                c.persistent_keepalive = Some(KICK_KEEPALIVE);
                                Some(PeerChange::Upsert(c))
                            }
                            _ => None,
                        })
                        .collect();
                    self.wg()?.apply(&kick)?;
                }
                self.wg()?.apply(peers)?;
                for p in peers {
                    let (key, endpoint) = match p {
                        PeerChange::Upsert(c) => (c.public_key, c.endpoint),
                        PeerChange::Remove(k) => (*k, None),
                    };
                    self.endpoints.retain(|(k, _)| *k != key);
                    if let Some(e) = endpoint {
                        self.endpoints.push((key, e));
                    }
                }
                Ok(())
            }
            Change::DelRoute((ip, len)) => {
                let i = index()?;
                self.rtnl.del_route(i, *ip, *len)
            }
            Change::AddRoute((ip, len)) => {
                let i = index()?;
                match self.rtnl.add_route(i, *ip, *len) {
                    Err(e) if e.raw_errno() == Some(libc::EEXIST) => {
                        warn!(
                            "route {ip}/{len} exists and is not wesher's: left as it is, not \
                             routed through {}",
                            self.iface
                        );
                        self.conflicts.push((*ip, *len));
                        Ok(())
                    }
                    other => other,
                }
            }
        }
    }

    pub fn endpoints(&self) -> &[(Key, SocketAddr)] {
        &self.endpoints
    }

    /// Removes the link (and with it its address and routes); one already gone is fine.
    pub fn delete_link(&mut self) -> Result<(), Error> {
        match self.index {
            Some(i) => self.rtnl.delete_link(i),
            None => Ok(()),
        }
    }
}

/// The backend, opened when there is none (borrowing only the field, not the whole `System`).
fn open_backend<'a>(wg: &'a mut Option<Backend>, iface: &str) -> Result<&'a mut Backend, Error> {
    if wg.is_none() {
        *wg = Some(Backend::open(iface)?);
    }
    wg.as_mut()
        .ok_or_else(|| Error::new("opening WireGuard", "no backend"))
}
