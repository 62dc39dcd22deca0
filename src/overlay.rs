//! Overlay addresses: the `Cidr` type, Go wesher's FNV-1a 128 derivation, reserved addresses and
//! deterministic collision resolution.
//!
//! Go derives `prefix with its host bytes replaced by the last bytes of fnv128a(name)` and never
//! checks for collisions. Peers use the address a node ADVERTISES, so a node that moves away from
//! a collision stays reachable by Go peers.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address with a prefix length (`10.0.0.0/8`, `2001:db8::/32`). The address is kept as given
/// (Go's `netip.Prefix` keeps host bits too); `network()` masks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

fn bit_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn octets(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Builds an address of the same family as `like` from its octets.
fn from_octets(like: IpAddr, bytes: &[u8]) -> IpAddr {
    match like {
        IpAddr::V4(_) => {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[..4]);
            IpAddr::V4(Ipv4Addr::from(b))
        }
        IpAddr::V6(_) => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&bytes[..16]);
            IpAddr::V6(Ipv6Addr::from(b))
        }
    }
}

fn mask_bits(addr: IpAddr, prefix_len: u8) -> u128 {
    let len = u32::from(bit_len(addr));
    let host = len - u32::from(prefix_len);
    let all = if len == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    all.checked_shl(host).map_or(0, |m| m & all)
}

fn to_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(like: IpAddr, bits: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(bits as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
    }
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Cidr, CidrError> {
        if prefix_len > bit_len(addr) {
            return Err(CidrError(format!(
                "prefix length {prefix_len} is longer than the {} bits of {addr}",
                bit_len(addr)
            )));
        }
        Ok(Cidr { addr, prefix_len })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Number of bits after the prefix.
    pub fn host_bits(&self) -> u8 {
        bit_len(self.addr) - self.prefix_len
    }

    /// The address with its host bits cleared.
    pub fn network(&self) -> IpAddr {
        from_bits(
            self.addr,
            to_bits(self.addr) & mask_bits(self.addr, self.prefix_len),
        )
    }

    /// The IPv4 broadcast address (all host bits set); None for IPv6, which has none.
    pub fn broadcast(&self) -> Option<IpAddr> {
        match self.addr {
            IpAddr::V4(_) => Some(from_bits(
                self.addr,
                to_bits(self.addr) | !mask_bits(self.addr, self.prefix_len) & u128::from(u32::MAX),
            )),
            IpAddr::V6(_) => None,
        }
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && {
            let mask = mask_bits(self.addr, self.prefix_len);
            to_bits(ip) & mask == to_bits(self.addr) & mask
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| CidrError(format!("{s:?} is not in ADDRESS/PREFIX form")))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError(format!("{addr:?} in {s:?} is not an IP address")))?;
        // Only plain decimal digits: `u8::from_str` would also take "+8".
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError(format!(
                "prefix length {len:?} in {s:?} is not a number"
            )));
        }
        let len: u8 = len
            .parse()
            .map_err(|_| CidrError(format!("prefix length {len:?} in {s:?} is out of range")))?;
        Cidr::new(addr, len).map_err(|e| CidrError(format!("{s:?}: {e}")))
    }
}

/// FNV-1a, 128 bits, over `data` (Go's `hash/fnv.New128a`), as a big-endian integer.
pub fn fnv1a_128(data: &[u8]) -> u128 {
    const OFFSET_BASIS: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    data.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u128::from(b)).wrapping_mul(PRIME)
    })
}

/// Go wesher's address for `name`: the whole host bytes of `net` replaced by the last bytes of
/// the hash. Bits of a partial host byte (prefix not a multiple of 8) are kept from the prefix,
/// exactly as Go does; config rejects such prefixes anyway.
pub fn derive(net: &Cidr, name: &str) -> IpAddr {
    let hash = fnv1a_128(name.as_bytes()).to_be_bytes();
    let mut ip = octets(net.addr);
    let host_bytes = usize::from(net.host_bits() / 8);
    let (ip_len, hash_len) = (ip.len(), hash.len());
    ip[ip_len - host_bytes..].copy_from_slice(&hash[hash_len - host_bytes..]);
    from_octets(net.addr, &ip)
}

/// An address no node may use: the network address, or the IPv4 broadcast address of `net`.
pub fn is_reserved(net: &Cidr, ip: IpAddr) -> bool {
    ip == net.network() || net.broadcast() == Some(ip)
}

/// The `attempt`-th address for `name`: attempt 0 is Go's address, attempt n > 0 hashes
/// `"<name>#<n>"`. Every node computes the same sequence, so moves are predictable.
pub fn candidate(net: &Cidr, name: &str, attempt: u32) -> IpAddr {
    if attempt == 0 {
        derive(net, name)
    } else {
        derive(net, &format!("{name}#{attempt}"))
    }
}

/// Upper bound on attempts: with at most a few thousand nodes in a /24 or larger net, a free
/// address is found long before; a tiny or full net ends the search instead of looping.
pub const MAX_ATTEMPTS: u32 = 4096;

/// The first candidate for `name` that is not reserved and not in `taken`; None when the net has
/// no free address within `MAX_ATTEMPTS` tries.
pub fn first_free(net: &Cidr, name: &str, taken: &[IpAddr]) -> Option<IpAddr> {
    (0..MAX_ATTEMPTS)
        .map(|attempt| candidate(net, name, attempt))
        .find(|ip| !is_reserved(net, *ip) && !taken.contains(ip))
}

/// Why the local node must change its overlay address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveReason {
    /// Our address is the network or broadcast address of the overlay.
    Reserved,
    /// This member advertises the same address and its name sorts before ours.
    Collision { with: String },
}

/// A decision to move the local node to another address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub to: IpAddr,
    pub reason: MoveReason,
}

/// Decides whether the local node (`local_name`, currently advertising `current`) must move,
/// given every other member's name and advertised address. On a collision the node whose name
/// sorts higher (byte order) moves, so exactly one of the two does, without negotiation; Go
/// nodes never move, so a collision between two Go nodes stays. Returns None when `current` is
/// fine, and also when no free address exists (the caller then keeps `current` and logs it).
pub fn must_move(
    net: &Cidr,
    local_name: &str,
    current: IpAddr,
    others: &[(String, IpAddr)],
) -> Option<Move> {
    let reason = if is_reserved(net, current) {
        MoveReason::Reserved
    } else {
        let winner = others
            .iter()
            .filter(|(name, ip)| *ip == current && name.as_str() < local_name)
            .map(|(name, _)| name)
            .min()?;
        MoveReason::Collision {
            with: winner.clone(),
        }
    };
    let taken: Vec<IpAddr> = others.iter().map(|(_, ip)| *ip).collect();
    first_free(net, local_name, &taken).map(|to| Move { to, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn go_vectors() {
        assert_eq!(derive(&cidr("10.0.0.0/8"), "test"), ip("10.221.153.165"));
        assert_eq!(derive(&cidr("10.0.0.0/24"), "test"), ip("10.0.0.165"));
        assert_eq!(
            derive(&cidr("2001:db8::/32"), "test"),
            ip("2001:db8:c575:7277:b806:e994:13dd:99a5")
        );
        assert_eq!(derive(&cidr("10.0.0.0/8"), "node1"), ip("10.59.73.60"));
        assert_eq!(derive(&cidr("10.0.0.0/8"), "node2"), ip("10.59.76.237"));
        assert_eq!(derive(&cidr("10.0.0.0/8"), "node3"), ip("10.59.75.178"));
    }

    #[test]
    fn fnv_known_values() {
        // Empty input hashes to the offset basis; "a" from the FNV reference test suite.
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
    }

    #[test]
    fn derive_keeps_network_bytes_as_given() {
        // Go uses prefix.Addr() unmasked; only host bytes are replaced.
        assert_eq!(derive(&cidr("10.1.2.3/16"), "test"), ip("10.1.153.165"));
        // A /32 leaves no host bytes: the address itself (config rejects this).
        assert_eq!(derive(&cidr("10.9.9.9/32"), "test"), ip("10.9.9.9"));
    }

    #[test]
    fn cidr_parse_display_contains() {
        let net = cidr("10.0.0.0/8");
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::ffff:10.0.0.1")));
        let v6 = cidr("2001:db8::/32");
        assert_eq!(v6.to_string(), "2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(cidr("::/0").contains(ip("::1")));
        assert_eq!(cidr("10.1.2.3/16").network(), ip("10.1.0.0"));
        assert_eq!(cidr("10.1.2.3/16").broadcast(), Some(ip("10.1.255.255")));
        assert_eq!(cidr("10.1.2.3/32").broadcast(), Some(ip("10.1.2.3")));
        assert_eq!(v6.broadcast(), None);
        assert_eq!(cidr("0.0.0.0/0").broadcast(), Some(ip("255.255.255.255")));
    }

    #[test]
    fn cidr_rejects_bad_input() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0/8",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "x/8",
            "/8",
            "10.0.0.0/1000",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(!err.to_string().is_empty(), "{bad}");
        }
        let err = "10.0.0.0/33".parse::<Cidr>().unwrap_err().to_string();
        assert!(err.contains("longer than the 32 bits"), "{err}");
    }

    #[test]
    fn reserved_addresses() {
        let net = cidr("10.0.0.0/24");
        assert!(is_reserved(&net, ip("10.0.0.0")));
        assert!(is_reserved(&net, ip("10.0.0.255")));
        assert!(!is_reserved(&net, ip("10.0.0.1")));
        let v6 = cidr("fd00::/64");
        assert!(is_reserved(&v6, ip("fd00::")));
        assert!(!is_reserved(&v6, ip("fd00::ffff:ffff:ffff:ffff")));
    }

    #[test]
    fn candidates_are_deterministic_and_distinct() {
        let net = cidr("10.0.0.0/8");
        assert_eq!(candidate(&net, "node1", 0), derive(&net, "node1"));
        assert_eq!(candidate(&net, "node1", 1), derive(&net, "node1#1"));
        assert_eq!(candidate(&net, "node1", 1), candidate(&net, "node1", 1));
        assert_ne!(candidate(&net, "node1", 1), candidate(&net, "node1", 0));
    }

    /// Finds a name whose address in `net` is the given reserved address.
    fn name_hashing_to(net: &Cidr, target: IpAddr) -> String {
        (0..100_000)
            .map(|i| format!("host{i}"))
            .find(|n| derive(net, n) == target)
            .expect("some name hashes to the target within a /24")
    }

    #[test]
    fn first_free_skips_reserved_and_taken() {
        let net = cidr("10.0.0.0/24");
        let name = name_hashing_to(&net, ip("10.0.0.0"));
        let got = first_free(&net, &name, &[]).unwrap();
        assert_eq!(got, candidate(&net, &name, 1));
        assert!(!is_reserved(&net, got));

        let taken = [candidate(&net, "x", 0), candidate(&net, "x", 1)];
        let got = first_free(&net, "x", &taken).unwrap();
        assert!(!taken.contains(&got));
        assert_eq!(got, candidate(&net, "x", 2));
    }

    #[test]
    fn first_free_gives_up_on_a_full_net() {
        // A /31 has two addresses, network and broadcast: nothing is free.
        let net = cidr("10.0.0.0/31");
        assert_eq!(first_free(&net, "x", &[]), None);
    }

    #[test]
    fn higher_name_moves_on_collision() {
        let net = cidr("10.0.0.0/8");
        let shared = derive(&net, "alpha");
        let others = vec![("alpha".to_string(), shared)];
        // "beta" sorts after "alpha": beta moves, to its first free candidate.
        let mv = must_move(&net, "beta", shared, &others).unwrap();
        assert_eq!(
            mv.reason,
            MoveReason::Collision {
                with: "alpha".into()
            }
        );
        assert_ne!(mv.to, shared);
        assert_eq!(mv.to, first_free(&net, "beta", &[shared]).unwrap());
        // "alpha" keeps its address when "beta" claims the same.
        let others = vec![("beta".to_string(), shared)];
        assert_eq!(must_move(&net, "alpha", shared, &others), None);
        // No collision at all.
        let others = vec![("gamma".to_string(), derive(&net, "gamma"))];
        assert_eq!(must_move(&net, "beta", derive(&net, "beta"), &others), None);
    }

    #[test]
    fn collision_move_avoids_every_taken_address() {
        let net = cidr("10.0.0.0/8");
        let shared = derive(&net, "zeta");
        let next = candidate(&net, "zeta", 1);
        let others = vec![("alpha".to_string(), shared), ("beta".to_string(), next)];
        let mv = must_move(&net, "zeta", shared, &others).unwrap();
        assert_eq!(mv.to, candidate(&net, "zeta", 2));
    }

    #[test]
    fn reserved_address_moves_even_without_peers() {
        let net = cidr("10.0.0.0/24");
        let name = name_hashing_to(&net, ip("10.0.0.255"));
        let mv = must_move(&net, &name, derive(&net, &name), &[]).unwrap();
        assert_eq!(mv.reason, MoveReason::Reserved);
        assert!(!is_reserved(&net, mv.to));
    }
}
