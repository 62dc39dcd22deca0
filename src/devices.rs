//! Devices without wesher (phones, laptops with a stock WireGuard app), added with `wesher peer
//! add`: a WireGuard peer of this node whose overlay address the other nodes route through this
//! node (it is advertised with our routed networks, as a host route). Pure: the rules for a new
//! device and the wg-quick configuration it gets; the agent applies, the state file keeps them.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use zeroize::Zeroizing;

use crate::mesh::host_prefix;
use crate::overlay::{self, Cidr};
use crate::reconcile::Net;
use crate::wireguard::{Key, PeerConfig, PrivateKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub public_key: Key,
    pub overlay: IpAddr,
}

impl Device {
    pub fn host_route(&self) -> Net {
        (self.overlay, host_prefix(self.overlay))
    }

    /// The route other nodes take to it: through us, as a routed network.
    pub fn routed_net(&self) -> Cidr {
        let (ip, len) = self.host_route();
        Cidr::new(ip, len).expect("a host prefix fits its own address")
    }

    /// The device's endpoint is whatever it connects from.
    pub fn peer_config(&self) -> PeerConfig {
        PeerConfig {
            public_key: self.public_key,
            endpoint: None,
            allowed_ips: vec![self.host_route()],
            persistent_keepalive: None,
        }
    }
}

/// The networks this node advertises: its routed networks and its devices' host routes.
pub fn advertised(routed: &[Cidr], devices: &[Device]) -> Vec<Cidr> {
    let mut out = routed.to_vec();
    out.extend(devices.iter().map(Device::routed_net));
    out
}

/// What a new device must not take: names and keys of members and devices, overlay addresses
/// of this node, members and other devices.
pub struct Taken<'a> {
    pub names: &'a [&'a str],
    pub keys: &'a [Key],
    pub overlays: &'a [IpAddr],
}

/// Checks a new device and gives it its overlay address: `wanted` if set by hand, else the
/// first free candidate derived from its name (the member rules).
pub fn admit(
    net: &Cidr,
    name: &str,
    public_key: Key,
    wanted: Option<IpAddr>,
    taken: &Taken,
) -> Result<Device, String> {
    crate::config::validate_node_name(name)?;
    if taken.names.contains(&name) {
        return Err(format!("{name:?} is already a member or device name"));
    }
    if taken.keys.contains(&public_key) {
        return Err("that public key is already in the mesh".into());
    }
    let overlay = match wanted {
        Some(ip) if !net.contains(ip) => return Err(format!("{ip} is not inside {net}")),
        Some(ip) if overlay::is_reserved(net, ip) => {
            return Err(format!("{ip} is the network or broadcast address of {net}"))
        }
        Some(ip) if taken.overlays.contains(&ip) => return Err(format!("{ip} is taken")),
        Some(ip) => ip,
        None => overlay::first_free(net, name, taken.overlays)
            .ok_or_else(|| format!("no free overlay address for {name:?} in {net}"))?,
    };
    Ok(Device {
        name: name.into(),
        public_key,
        overlay,
    })
}

/// The wg-quick configuration of a device, without its `PrivateKey` (the client that made the
/// key adds it; the agent never sees it).
pub fn wg_quick(device: &Device, node_key: Key, endpoint: SocketAddr, allowed: &[Cidr]) -> String {
    let (ip, len) = device.host_route();
    let allowed: Vec<String> = allowed.iter().map(Cidr::to_string).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "[Interface]\nAddress = {ip}/{len}\n\n[Peer]\nPublicKey = {}\nEndpoint = {endpoint}\n\
         AllowedIPs = {}\nPersistentKeepalive = 25\n",
        node_key.to_base64(),
        allowed.join(", ")
    );
    out
}

/// `config` with `PrivateKey = KEY` as the first line of its `[Interface]`; zeroized when
/// dropped.
pub fn with_private_key(config: &str, private: &PrivateKey) -> Zeroizing<String> {
    const HEAD: &str = "[Interface]\n";
    let Some(at) = config.find(HEAD).map(|i| i + HEAD.len()) else {
        return Zeroizing::new(config.to_string());
    };
    let key = private.to_base64();
    // Sized up front: growing would leave copies of the key behind.
    let mut out = Zeroizing::new(String::with_capacity(config.len() + key.len() + 16));
    out.push_str(&config[..at]);
    out.push_str("PrivateKey = ");
    out.push_str(&key);
    out.push('\n');
    out.push_str(&config[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Cidr {
        "10.0.0.0/8".parse().unwrap()
    }

    const NONE: Taken = Taken {
        names: &[],
        keys: &[],
        overlays: &[],
    };

    #[test]
    fn a_device_gets_the_derived_address_or_the_next_free_one() {
        let d = admit(&net(), "phone", Key([1; 32]), None, &NONE).unwrap();
        assert_eq!(d.overlay, overlay::derive(&net(), "phone"));
        let taken = Taken {
            overlays: &[d.overlay],
            ..NONE
        };
        let d2 = admit(&net(), "phone", Key([2; 32]), None, &taken).unwrap();
        assert_ne!(d2.overlay, d.overlay);
        assert!(net().contains(d2.overlay));
    }

    #[test]
    fn clashes_and_bad_addresses_are_refused() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let taken = Taken {
            names: &["node1"],
            keys: &[Key([7; 32])],
            overlays: &[ip],
        };
        for (name, key, wanted, why) in [
            ("node1", 1, None, "already a member"),
            ("phone", 7, None, "public key"),
            ("phone", 1, Some(ip), "taken"),
            (
                "phone",
                1,
                Some("10.0.0.0".parse().unwrap()),
                "network or broadcast",
            ),
            ("phone", 1, Some("192.0.2.1".parse().unwrap()), "not inside"),
            ("a b", 1, None, "node name"),
        ] {
            let e = admit(&net(), name, Key([key; 32]), wanted, &taken).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let d = admit(
            &net(),
            "laptop",
            Key([1; 32]),
            Some("10.9.9.9".parse().unwrap()),
            &taken,
        );
        assert_eq!(d.unwrap().overlay, "10.9.9.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_config_is_wg_quick_and_takes_the_private_key() {
        let d = Device {
            name: "phone".into(),
            public_key: Key([1; 32]),
            overlay: "10.1.2.3".parse().unwrap(),
        };
        let allowed = [net(), "192.168.1.0/24".parse().unwrap()];
        let c = wg_quick(
            &d,
            Key([2; 32]),
            "192.0.2.1:51820".parse().unwrap(),
            &allowed,
        );
        let c = with_private_key(&c, &PrivateKey::from([3; 32]));
        assert_eq!(
            *c,
            format!(
                "[Interface]\nPrivateKey = {}\nAddress = 10.1.2.3/32\n\n[Peer]\nPublicKey = {}\n\
                 Endpoint = 192.0.2.1:51820\nAllowedIPs = 10.0.0.0/8, 192.168.1.0/24\n\
                 PersistentKeepalive = 25\n",
                Key([3; 32]).to_base64(),
                Key([2; 32]).to_base64()
            )
        );
        assert_eq!(d.routed_net().to_string(), "10.1.2.3/32");
    }
}
