//! The wesher schema on top of the gob node metadata: what a member's blob means to the mesh
//! (overlay address, WireGuard key, routed networks, capabilities), and ours to announce.
//! The gob codec itself is `nodemeta`.

use std::net::IpAddr;

use crate::membership::Member;
use crate::nodemeta::{Extra, ExtraValue, NodeMeta};
use crate::overlay::Cidr;
use crate::wireguard::Key;

/// The gob field that carries routed networks; Go nodes ignore fields they do not know.
const ROUTED_NETS_FIELD: &str = "RoutedNets";
/// The gob field listing what this implementation does differently from Go wesher.
const CAPS_FIELD: &str = "Caps";
/// We keep WireGuard sessions across membership events; a member without it (Go wesher)
/// replaces its whole peer list, and so drops every session, at each event.
const CAP_KEEPS_SESSIONS: &str = "keeps-sessions";
/// The overlay address was set by hand (`--overlay-addr`): a derived address yields to it.
const CAP_FIXED_OVERLAY: &str = "fixed-overlay";

/// What we announce about ourselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMeta {
    pub overlay: IpAddr,
    pub public_key: Key,
    pub routed: Vec<Cidr>,
    pub fixed_overlay: bool,
}

impl LocalMeta {
    /// The gob blob: overlay address, WireGuard key, capabilities and routed networks.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut meta = NodeMeta::new(self.overlay, self.public_key.to_base64());
        let mut caps = vec![CAP_KEEPS_SESSIONS.to_string()];
        if self.fixed_overlay {
            caps.push(CAP_FIXED_OVERLAY.into());
        }
        meta.extras.push(Extra {
            name: CAPS_FIELD.into(),
            value: ExtraValue::Strings(caps),
        });
        if !self.routed.is_empty() {
            meta.extras.push(Extra {
                name: ROUTED_NETS_FIELD.into(),
                value: ExtraValue::Strings(self.routed.iter().map(Cidr::to_string).collect()),
            });
        }
        meta.encode()
            .map_err(|e| format!("encoding our node metadata: {e}"))
    }
}

/// A member's metadata as the mesh reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMeta {
    pub overlay: IpAddr,
    pub public_key: Key,
    /// Entries that do not parse are skipped.
    pub routed: Vec<Cidr>,
    /// It drops its WireGuard sessions at every membership event (Go wesher).
    pub resets_sessions: bool,
    pub fixed_overlay: bool,
}

impl PeerMeta {
    /// Decodes a member's blob, with its WireGuard key checked.
    pub fn of(m: &Member) -> Result<PeerMeta, String> {
        let (meta, _format) =
            NodeMeta::decode(&m.meta).map_err(|e| format!("unusable metadata: {e}"))?;
        let public_key = Key::from_base64(&meta.pub_key)
            .map_err(|e| format!("bad WireGuard public key: {e}"))?;
        let caps = strings_field(&meta, CAPS_FIELD);
        let has = |cap: &str| caps.iter().any(|c| c == cap);
        Ok(PeerMeta {
            overlay: meta.overlay_addr,
            public_key,
            routed: strings_field(&meta, ROUTED_NETS_FIELD)
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            resets_sessions: !has(CAP_KEEPS_SESSIONS),
            fixed_overlay: has(CAP_FIXED_OVERLAY),
        })
    }
}

/// An extra `[]string` field of a member's metadata; empty when absent.
fn strings_field<'m>(meta: &'m NodeMeta, name: &str) -> &'m [String] {
    meta.extras
        .iter()
        .find_map(|e| match &e.value {
            ExtraValue::Strings(v) if e.name == name => Some(v.as_slice()),
            _ => None,
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{MemberState, Vsn};

    fn member(meta: Vec<u8>) -> Member {
        Member {
            name: "a".into(),
            addr: "192.0.2.1:7946".parse().unwrap(),
            meta,
            incarnation: 1,
            state: MemberState::Alive,
            vsn: Vsn::default(),
        }
    }

    #[test]
    fn our_metadata_reads_back() {
        let ours = LocalMeta {
            overlay: "10.0.0.7".parse().unwrap(),
            public_key: Key([9; 32]),
            routed: vec!["192.168.5.0/24".parse().unwrap()],
            fixed_overlay: true,
        };
        let peer = PeerMeta::of(&member(ours.encode().unwrap())).unwrap();
        assert_eq!(peer.overlay, ours.overlay);
        assert_eq!(peer.public_key, ours.public_key);
        assert_eq!(peer.routed, ours.routed);
        assert!(!peer.resets_sessions && peer.fixed_overlay);
    }

    #[test]
    fn go_metadata_has_no_caps() {
        let go = NodeMeta::new("10.0.0.8".parse().unwrap(), Key([3; 32]).to_base64());
        let peer = PeerMeta::of(&member(go.encode().unwrap())).unwrap();
        assert!(peer.resets_sessions && !peer.fixed_overlay && peer.routed.is_empty());
        assert!(PeerMeta::of(&member(Vec::new())).is_err());
    }
}
