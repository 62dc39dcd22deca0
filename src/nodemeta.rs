//! wesher's node metadata: a Go `encoding/gob` stream of one `nodeMeta` struct.
//!
//! v0.3 (and HEAD) nodes send `{OverlayAddr netip.Addr, PubKey string}`; v0.2 nodes sent
//! `{OverlayAddr net.IPNet{IP, Mask []byte}, PubKey string}`. Our encoding of the two fields is
//! byte-identical to Go's (124 bytes for IPv4). gob matches struct fields by name and drops
//! fields the receiver does not know, so we may append extra fields (`Extra`): the type
//! definition we send lists only the fields present, hence with no extras the bytes stay
//! identical to Go's, and Go decoders still read OverlayAddr and PubKey when extras are there.
//!
//! Decoding follows the gob spec (src/gob.rs), not one Go build's bytes: which ids the types get
//! depends on the Go release and on what the sending process gob-encoded before (Go 1.19 numbers
//! nodeMeta 65, Go 1.20 and later 64), fields are picked by name, and any we do not know are
//! skipped. Extras we cannot represent (not UTF-8, an address with a zone) are skipped too, as
//! a Go wesher, which knows no extras, skips them all.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::gob::{self, put_bytes, put_int, put_message, put_uint, GobError, Value, T_STRING};

/// memberlist's MetaMaxSize: metadata longer than this is refused by memberlist.
pub const META_MAX_SIZE: usize = 512;

/// The decoded (or to-be-encoded) metadata of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMeta {
    pub overlay_addr: IpAddr,
    /// The WireGuard public key in standard base64 (44 characters), as Go sends it.
    pub pub_key: String,
    /// Fields after the two Go ones, in encoding order; empty values are not sent.
    pub extras: Vec<Extra>,
}

/// One extra struct field: its Go field name (an exported identifier) and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    pub name: String,
    pub value: ExtraValue,
}

/// The value shapes extra fields may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraValue {
    /// Go `[]string`.
    Strings(Vec<String>),
    /// Go `[]netip.Addr`.
    Addrs(Vec<IpAddr>),
}

impl ExtraValue {
    fn is_empty(&self) -> bool {
        match self {
            ExtraValue::Strings(v) => v.is_empty(),
            ExtraValue::Addrs(v) => v.is_empty(),
        }
    }
}

/// Which wesher generation encoded the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaFormat {
    /// `OverlayAddr` as `netip.Addr` (v0.3 and later).
    V03,
    /// `OverlayAddr` as `net.IPNet` (v0.2).
    V02,
}

/// A metadata blob that could not be encoded or decoded; Display names the field or offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaError(String);

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node metadata: {}", self.0)
    }
}

impl std::error::Error for MetaError {}

impl From<GobError> for MetaError {
    fn from(e: GobError) -> MetaError {
        MetaError(e.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, MetaError> {
    Err(MetaError(msg.into()))
}

/// `netip.Addr.MarshalBinary`: 4 bytes for IPv4, 16 for IPv6 (we never have zones).
fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn is_exported_ident(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

const STRUCT_NAME: &str = "nodeMeta";
/// Ids as a fresh Go 1.19 process numbers them, so our bytes equal the captured Go wesher's.
const STRUCT_ID: i64 = 65;
const ADDR_TYPE: (i64, &str) = (66, "Addr");

impl NodeMeta {
    pub fn new(overlay_addr: IpAddr, pub_key: String) -> NodeMeta {
        NodeMeta {
            overlay_addr,
            pub_key,
            extras: Vec::new(),
        }
    }

    /// The gob stream Go's `gob.NewEncoder(buf).Encode(nodeMeta)` writes, plus any non-empty
    /// extras. Fails for an invalid or duplicate extra name or when longer than META_MAX_SIZE.
    pub fn encode(&self) -> Result<Vec<u8>, MetaError> {
        let present: Vec<&Extra> = self.extras.iter().filter(|e| !e.value.is_empty()).collect();
        for (i, extra) in present.iter().enumerate() {
            if !is_exported_ident(&extra.name)
                || extra.name == "OverlayAddr"
                || extra.name == "PubKey"
                || present[..i].iter().any(|e| e.name == extra.name)
            {
                return err(format!(
                    "extra field name {:?} is not a unique exported Go identifier",
                    extra.name
                ));
            }
        }

        // Type ids as Go assigns them: the struct, then its field types in first-use order.
        let struct_id = STRUCT_ID;
        let mut next_id = ADDR_TYPE.0 + 1;
        let mut slice_types: Vec<(&str, i64, i64)> = Vec::new(); // (name, id, elem)
        let mut fields: Vec<(&str, i64)> = vec![("OverlayAddr", ADDR_TYPE.0), ("PubKey", T_STRING)];
        for extra in &present {
            let (type_name, elem) = match extra.value {
                ExtraValue::Strings(_) => ("[]string", T_STRING),
                ExtraValue::Addrs(_) => ("[]netip.Addr", ADDR_TYPE.0),
            };
            let id = match slice_types.iter().find(|t| t.0 == type_name) {
                Some(t) => t.1,
                None => {
                    slice_types.push((type_name, next_id, elem));
                    next_id += 1;
                    next_id - 1
                }
            };
            fields.push((extra.name.as_str(), id));
        }

        let mut out = Vec::with_capacity(128);
        put_message(
            &mut out,
            &gob::struct_type_def(struct_id, STRUCT_NAME, &fields),
        );
        put_message(
            &mut out,
            &gob::binary_marshaler_type_def(ADDR_TYPE.0, ADDR_TYPE.1),
        );
        for (name, id, elem) in &slice_types {
            put_message(&mut out, &gob::slice_type_def(*id, name, *elem));
        }

        let mut v = Vec::with_capacity(64);
        put_int(&mut v, struct_id);
        // gob omits zero values; the field delta counts the skipped ones.
        let mut delta = 1;
        put_uint(&mut v, delta);
        put_bytes(&mut v, &addr_bytes(self.overlay_addr));
        if self.pub_key.is_empty() {
            delta += 1;
        } else {
            put_uint(&mut v, delta);
            put_bytes(&mut v, self.pub_key.as_bytes());
            delta = 1;
        }
        for extra in &present {
            put_uint(&mut v, delta);
            delta = 1;
            match &extra.value {
                ExtraValue::Strings(items) => {
                    put_uint(&mut v, items.len() as u64);
                    for s in items {
                        put_bytes(&mut v, s.as_bytes());
                    }
                }
                ExtraValue::Addrs(items) => {
                    put_uint(&mut v, items.len() as u64);
                    for ip in items {
                        put_bytes(&mut v, &addr_bytes(*ip));
                    }
                }
            }
        }
        v.push(0);
        put_message(&mut out, &v);

        if out.len() > META_MAX_SIZE {
            return err(format!(
                "{} bytes encoded, more than memberlist's limit of {META_MAX_SIZE}",
                out.len()
            ));
        }
        Ok(out)
    }

    /// Decodes metadata from a v0.3+ or v0.2 node (or ours, extras included). Unknown fields are
    /// skipped; OverlayAddr and PubKey must be present and valid.
    pub fn decode(bytes: &[u8]) -> Result<(NodeMeta, MetaFormat), MetaError> {
        if bytes.is_empty() {
            return err("empty (the node has not published its metadata yet)");
        }
        let (value, types) = gob::decode_struct(bytes)?;
        let Value::Struct(fields) = value else {
            return err("top-level value is not a struct");
        };

        let mut overlay = None;
        let mut pub_key = None;
        let mut extras = Vec::new();
        for (name, value) in fields {
            match name.as_str() {
                "OverlayAddr" => overlay = Some(overlay_addr(value)?),
                "PubKey" => pub_key = Some(pub_key_field(value)?),
                _ => {
                    if let Some(value) = extra_value(&types, value) {
                        extras.push(Extra { name, value });
                    }
                }
            }
        }
        let Some((overlay_addr, format)) = overlay else {
            return err("field OverlayAddr missing");
        };
        let Some(pub_key) = pub_key else {
            return err("field PubKey missing");
        };
        Ok((
            NodeMeta {
                overlay_addr,
                pub_key,
                extras,
            },
            format,
        ))
    }
}

fn ip_from_bytes(field: &str, b: &[u8]) -> Result<IpAddr, MetaError> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        return Ok(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    if let Ok(v6) = <[u8; 16]>::try_from(b) {
        return Ok(IpAddr::V6(Ipv6Addr::from(v6)));
    }
    err(format!(
        "field {field}: {} address bytes, expected 4 (IPv4) or 16 (IPv6)",
        b.len()
    ))
}

fn overlay_addr(value: Value) -> Result<(IpAddr, MetaFormat), MetaError> {
    match value {
        Value::Marshaled(_, b) => Ok((ip_from_bytes("OverlayAddr", &b)?, MetaFormat::V03)),
        Value::Struct(fields) => {
            // v0.2 net.IPNet: the IP is a plain byte slice, 4 or 16 bytes (IPv4 maybe mapped).
            let ip = fields
                .into_iter()
                .find(|(name, _)| name == "IP")
                .map(|(_, v)| v);
            match ip {
                Some(Value::Bytes(b)) => {
                    let ip = match ip_from_bytes("OverlayAddr.IP", &b)? {
                        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                        v4 => v4,
                    };
                    Ok((ip, MetaFormat::V02))
                }
                Some(_) => err("field OverlayAddr.IP is not a byte slice"),
                None => err("field OverlayAddr.IP missing"),
            }
        }
        _ => err("field OverlayAddr is neither netip.Addr nor net.IPNet"),
    }
}

fn pub_key_field(value: Value) -> Result<String, MetaError> {
    let Value::Str(b) = value else {
        return err("field PubKey is not a string");
    };
    let key = String::from_utf8(b).map_err(|_| MetaError("field PubKey is not UTF-8".into()))?;
    crate::base64::decode_key(&key).map_err(|e| MetaError(format!("field PubKey {key:?}: {e}")))?;
    Ok(key)
}

/// An extra field of a shape we know (`[]string`, `[]netip.Addr`); None for any other.
fn extra_value(types: &gob::Types, value: Value) -> Option<ExtraValue> {
    let Value::Slice(elem, items) = value else {
        return None;
    };
    if elem == T_STRING {
        let strings = items.into_iter().map(|item| match item {
            Value::Str(b) => String::from_utf8(b).ok(),
            _ => None,
        });
        return strings.collect::<Option<_>>().map(ExtraValue::Strings);
    }
    if types.marshaled_name(elem) != Some(ADDR_TYPE.1.as_bytes()) {
        return None;
    }
    let addrs = items.into_iter().map(|item| match item {
        Value::Marshaled(_, b) => ip_from_bytes("", &b).ok(),
        _ => None,
    });
    addrs.collect::<Option<_>>().map(ExtraValue::Addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gob::T_INT;
    use crate::gob::{binary_marshaler_type_def, map_type_def, slice_type_def, struct_type_def};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The 68-byte type-definition prefix every Go v0.3 blob starts with (MEMBERLIST.md).
    const PREFIX: &str = "32ff81030101086e6f64654d65746101ff82000102010b4f7665726c61794164647201\
        ff840001065075624b6579010c00000010ff83060101044164647201ff84000000";

    /// Metadata of node1, node3, node2 captured on the wire from Go wesher (three-nodes.pcap,
    /// decrypted with the capture's cluster key).
    const CAPTURED: [(&str, &str, &str); 3] = [
        (
            "10.59.73.60",
            "PuJQWAkFkvjvaGUdTvw6nkU5GNK1EN0/SaA999MERjw=",
            "37ff8201040a3b493c012c50754a5157416b466b766a7661475564547677366e6b5535474e4b31454e\
             302f5361413939394d45526a773d00",
        ),
        (
            "10.59.75.178",
            "HHSHNqmqUNIIvRcegVl+oenoifXNrdnhMmxoJDFO0WU=",
            "37ff8201040a3b4bb2012c484853484e716d71554e49497652636567566c2b6f656e6f6966584e7264\
             6e684d6d786f4a44464f3057553d00",
        ),
        (
            "10.59.76.237",
            "Byv7NQMUr8dvN5dU3YS4LlYfIbcXdvSaxbrvETLrXmA=",
            "37ff8201040a3b4ced012c427976374e514d55723864764e356455335953344c6c596649626358647653\
             617862727645544c72586d413d00",
        ),
    ];

    /// Go 1.19 `gob.Encode(nodeMeta{netip.MustParseAddr("2001:db8:c575:7277:b806:e994:13dd:99a5"),
    /// key})`: the IPv6 form.
    const GO_V6_VALUE: &str =
        "43ff82011020010db8c5757277b806e99413dd99a5012c50754a5157416b466b766a\
        7661475564547677366e6b5535474e4b31454e302f5361413939394d45526a773d00";

    /// Go `gob.Encode` of v0.2's `nodeMeta{OverlayAddr net.IPNet, PubKey string}` for
    /// 10.221.153.165/32 (from net.ParseCIDR, so a 4-byte IP).
    const GO_V02_V4: &str =
        "32ff81030101086e6f64654d65746101ff82000102010b4f7665726c61794164647201ff840001065075624b\
        6579010c00000023ff830301010549504e657401ff8400010201024950010a0001044d61736b010a0000003f\
        ff820101040add99a50104ffffffff00012c50754a5157416b466b766a7661475564547677366e6b5535474e\
        4b31454e302f5361413939394d45526a773d00";

    /// The same with a 16-byte (IPv4-mapped) IP, as net.ParseIP returns.
    const GO_V02_V4_MAPPED: &str =
        "32ff81030101086e6f64654d65746101ff82000102010b4f7665726c61794164647201ff840001065075624b\
        6579010c00000023ff830301010549504e657401ff8400010201024950010a0001044d61736b010a0000004b\
        ff8201011000000000000000000000ffff0add99a50104ffffffff00012c50754a5157416b466b766a766147\
        5564547677366e6b5535474e4b31454e302f5361413939394d45526a773d00";

    /// v0.2 with an IPv6 /128.
    const GO_V02_V6: &str =
        "32ff81030101086e6f64654d65746101ff82000102010b4f7665726c61794164647201ff840001065075624b\
        6579010c00000023ff830301010549504e657401ff8400010201024950010a0001044d61736b010a00000057\
        ff8201011020010db8c5757277b806e99413dd99a50110ffffffffffffffffffffffffffffffff00012c5075\
        4a5157416b466b766a7661475564547677366e6b5535474e4b31454e302f5361413939394d45526a773d00";

    /// Go `gob.Encode` of `struct nodeMetaExt{OverlayAddr netip.Addr; PubKey string;
    /// RoutedNets []string; Candidates []netip.Addr}` with both extras set: how a Go build with
    /// extra fields would look (type names and ids differ from ours; decoders do not care).
    const GO_EXTENDED: &str =
        "55ff890301010b6e6f64654d65746145787401ff8a000104010b4f7665726c617941\
        64647201ff840001065075624b6579010c00010a526f757465644e65747301ff8c00010a43616e646964\
        6174657301ff8e00000010ff83060101044164647201ff8400000016ff8b020101085b5d737472696e67\
        01ff8c00010c00001bff8d0201010c5b5d6e657469702e4164647201ff8e0001ff84000059ff8a01040a\
        3b493c012c50754a5157416b466b766a7661475564547677366e6b5535474e4b31454e302f536141393939\
        4d45526a773d01020e3139322e3136382e312e302f323409666430303a3a2f36340101040a01020300";

    /// Our encoding of node1's metadata with three extras (see the test below). Checked once
    /// against Go 1.19's encoding/gob: decoding it into v0.3's `nodeMeta{OverlayAddr netip.Addr;
    /// PubKey string}` gives 10.59.73.60 and the key, and a struct with the three extra fields
    /// as well gets all of them.
    const OURS_EXTENDED: &str =
        "60ff81030101086e6f64654d65746101ff82000105010b4f7665726c61794164647201ff840001065075624b\
        6579010c00010a526f757465644e65747301ff8600010a43616e6469646174657301ff880001084d6f72654e\
        65747301ff8600000010ff83060101044164647201ff8400000016ff85020101085b5d737472696e6701ff86\
        00010c00001bff870201010c5b5d6e657469702e4164647201ff880001ff8400006eff8201040a3b493c012c\
        50754a5157416b466b766a7661475564547677366e6b5535474e4b31454e302f5361413939394d45526a773d\
        01010e3139322e3136382e312e302f32340102040a01020310fd00000000000000000000000000000101010b\
        31302e392e302e302f313600";

    const KEY1: &str = "PuJQWAkFkvjvaGUdTvw6nkU5GNK1EN0/SaA999MERjw=";

    #[test]
    fn prefix_is_68_bytes() {
        assert_eq!(hex(PREFIX).len(), 68);
    }

    #[test]
    fn encode_is_byte_identical_to_captured_go_metadata() {
        for (addr, key, value) in CAPTURED {
            let want = [hex(PREFIX), hex(value)].concat();
            let meta = NodeMeta::new(ip(addr), key.to_string());
            let got = meta.encode().unwrap();
            assert_eq!(got.len(), 124);
            assert_eq!(got, want, "{addr}");
            assert_eq!(NodeMeta::decode(&want).unwrap(), (meta, MetaFormat::V03));
        }
    }

    #[test]
    fn ipv6_is_byte_identical_and_round_trips() {
        let meta = NodeMeta::new(ip("2001:db8:c575:7277:b806:e994:13dd:99a5"), KEY1.into());
        let want = [hex(PREFIX), hex(GO_V6_VALUE)].concat();
        assert_eq!(meta.encode().unwrap(), want);
        assert_eq!(NodeMeta::decode(&want).unwrap(), (meta, MetaFormat::V03));
    }

    /// Go 1.23 (bookworm-backports) `gob.Encode` of the same nodeMeta as CAPTURED[0], in a
    /// fresh process: Go 1.20 and later number nodeMeta 64 and netip.Addr 65.
    const GO123_V4: &str =
        "317f030101086e6f64654d65746101ff80000102010b4f7665726c61794164647201ff82\
        0001065075624b6579010c00000010ff81060101044164647201ff8200000037ff8001040a3b493c012c5075\
        4a5157416b466b766a7661475564547677366e6b5535474e4b31454e302f5361413939394d45526a773d00";

    #[test]
    fn decodes_go_1_20_numbering_from_type_id_64() {
        let got = NodeMeta::decode(&hex(GO123_V4));
        let want = NodeMeta::new(ip("10.59.73.60"), KEY1.into());
        assert_eq!(got, Ok((want, MetaFormat::V03)));
    }

    #[test]
    fn decodes_v02_ipnet() {
        for (blob, addr) in [
            (GO_V02_V4, "10.221.153.165"),
            (GO_V02_V4_MAPPED, "10.221.153.165"),
            (GO_V02_V6, "2001:db8:c575:7277:b806:e994:13dd:99a5"),
        ] {
            let (meta, format) = NodeMeta::decode(&hex(blob)).unwrap();
            assert_eq!(format, MetaFormat::V02);
            assert_eq!(meta, NodeMeta::new(ip(addr), KEY1.into()));
        }
    }

    #[test]
    fn decodes_go_struct_with_extra_fields() {
        let (meta, format) = NodeMeta::decode(&hex(GO_EXTENDED)).unwrap();
        assert_eq!(format, MetaFormat::V03);
        assert_eq!(meta.overlay_addr, ip("10.59.73.60"));
        assert_eq!(meta.pub_key, KEY1);
        assert_eq!(
            meta.extras,
            vec![
                Extra {
                    name: "RoutedNets".into(),
                    value: ExtraValue::Strings(vec!["192.168.1.0/24".into(), "fd00::/64".into()]),
                },
                Extra {
                    name: "Candidates".into(),
                    value: ExtraValue::Addrs(vec![ip("10.1.2.3")]),
                },
            ]
        );
    }

    #[test]
    fn our_extras_decode_and_keep_the_original_fields() {
        let mut meta = NodeMeta::new(ip("10.59.73.60"), KEY1.into());
        meta.extras = vec![
            Extra {
                name: "RoutedNets".into(),
                value: ExtraValue::Strings(vec!["192.168.1.0/24".into()]),
            },
            Extra {
                name: "Candidates".into(),
                value: ExtraValue::Addrs(vec![ip("10.1.2.3"), ip("fd00::1")]),
            },
            Extra {
                name: "MoreNets".into(),
                value: ExtraValue::Strings(vec!["10.9.0.0/16".into()]),
            },
        ];
        let blob = meta.encode().unwrap();
        // The exact bytes Go's decoder was checked against (two-field and full struct).
        assert_eq!(blob, hex(OURS_EXTENDED));
        assert_eq!(NodeMeta::decode(&blob).unwrap(), (meta, MetaFormat::V03));
    }

    #[test]
    fn empty_extras_keep_go_bytes() {
        let mut meta = NodeMeta::new(ip("10.59.73.60"), KEY1.into());
        meta.extras = vec![
            Extra {
                name: "RoutedNets".into(),
                value: ExtraValue::Strings(vec![]),
            },
            Extra {
                name: "Candidates".into(),
                value: ExtraValue::Addrs(vec![]),
            },
        ];
        let want = [hex(PREFIX), hex(CAPTURED[0].2)].concat();
        assert_eq!(meta.encode().unwrap(), want);
    }

    #[test]
    fn extra_names_are_checked() {
        for bad in ["routedNets", "PubKey", "OverlayAddr", "", "Has Space"] {
            let mut meta = NodeMeta::new(ip("10.0.0.1"), KEY1.into());
            meta.extras.push(Extra {
                name: bad.into(),
                value: ExtraValue::Strings(vec!["x".into()]),
            });
            assert!(meta.encode().is_err(), "{bad:?}");
        }
        let mut meta = NodeMeta::new(ip("10.0.0.1"), KEY1.into());
        for _ in 0..2 {
            meta.extras.push(Extra {
                name: "Dup".into(),
                value: ExtraValue::Strings(vec!["x".into()]),
            });
        }
        let e = meta.encode().unwrap_err().to_string();
        assert!(e.contains("\"Dup\""), "{e}");
    }

    #[test]
    fn oversized_metadata_is_refused() {
        let mut meta = NodeMeta::new(ip("10.0.0.1"), KEY1.into());
        meta.extras.push(Extra {
            name: "RoutedNets".into(),
            value: ExtraValue::Strings(vec!["192.168.100.0/24".into(); 40]),
        });
        let e = meta.encode().unwrap_err().to_string();
        assert!(e.contains("limit of 512"), "{e}");
    }

    fn with_value(value_body: &str) -> Vec<u8> {
        let body = hex(value_body);
        let mut out = hex(PREFIX);
        put_message(&mut out, &body);
        out
    }

    #[test]
    fn rejects_bad_address_lengths() {
        // 5-byte address, then a 15-byte one (IPv6 must be exactly 16).
        let five = with_value(&format!("ff82 01 05 0a3b493c01 01 2c {} 00", hex_str(KEY1)));
        let e = NodeMeta::decode(&five).unwrap_err().to_string();
        assert!(e.contains("OverlayAddr: 5 address bytes"), "{e}");
        let fifteen = with_value(&format!(
            "ff82 01 0f 20010db8c5757277b806e99413dd99 01 2c {} 00",
            hex_str(KEY1)
        ));
        let e = NodeMeta::decode(&fifteen).unwrap_err().to_string();
        assert!(e.contains("15 address bytes"), "{e}");
    }

    fn hex_str(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn rejects_missing_or_bad_fields() {
        // Go's zero nodeMeta: both fields omitted.
        let e = NodeMeta::decode(&with_value("ff82 00"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("OverlayAddr missing"), "{e}");
        let e = NodeMeta::decode(&with_value("ff82 01 04 0a000001 00"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PubKey missing"), "{e}");
        let e = NodeMeta::decode(&with_value("ff82 01 04 0a000001 01 03 616263 00"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PubKey \"abc\""), "{e}");
        let e = NodeMeta::decode(&[]).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let full = NodeMeta::new(ip("10.59.73.60"), KEY1.into())
            .encode()
            .unwrap();
        for len in 0..full.len() {
            assert!(NodeMeta::decode(&full[..len]).is_err(), "len {len}");
        }
        let ext = hex(GO_EXTENDED);
        for len in 0..ext.len() {
            assert!(NodeMeta::decode(&ext[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn hostile_streams_are_rejected_without_panic() {
        // Huge counts and lengths, undefined types, redefinitions, trailing bytes.
        let cases = [
            "03 ff82 00",                        // value before any type
            "02 ff83",                           // empty type definition body
            "05 ff83 02 01 00 00 ff",            // slice type then garbage length
            "0a ff83 02 01 01 01 ff82 00 00 00", // type with bad CommonType
        ];
        for case in cases {
            assert!(NodeMeta::decode(&hex(case)).is_err(), "{case}");
        }
        // Redefining the struct id is refused.
        let mut twice = hex(PREFIX);
        twice.extend_from_slice(&hex(PREFIX)[..51]);
        assert!(NodeMeta::decode(&twice).is_err());
        // Trailing bytes inside the value message.
        let e = NodeMeta::decode(&with_value(&format!(
            "ff82 01 04 0a000001 01 2c {} 00 00",
            hex_str(KEY1)
        )))
        .unwrap_err()
        .to_string();
        assert!(e.contains("unexpected bytes"), "{e}");
        // Every single-byte corruption of a valid blob either decodes or errors: never panics.
        let good = hex(GO_EXTENDED);
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xf8, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = NodeMeta::decode(&bad);
            }
        }
    }

    #[test]
    fn unknown_field_shapes_are_skipped() {
        // OverlayAddr, PubKey, then fields we do not know: a map[string]int, an int, and a
        // []Key of 32-byte BinaryMarshaler values (a list of marshaled values that are not
        // netip.Addr must not be mistaken for addresses). All are skipped, as gob does.
        let mut out = Vec::new();
        put_message(
            &mut out,
            &struct_type_def(
                65,
                "nodeMeta",
                &[
                    ("OverlayAddr", 66),
                    ("PubKey", T_STRING),
                    ("M", 67),
                    ("N", T_INT),
                    ("Keys", 68),
                ],
            ),
        );
        put_message(&mut out, &binary_marshaler_type_def(66, "Addr"));
        put_message(&mut out, &map_type_def(67, T_STRING, T_INT));
        put_message(&mut out, &slice_type_def(68, "[]Key", 69));
        put_message(&mut out, &binary_marshaler_type_def(69, "Key"));
        let mut v = Vec::new();
        put_int(&mut v, 65);
        v.extend_from_slice(&[1, 4, 10, 0, 0, 7]);
        put_uint(&mut v, 1);
        put_bytes(&mut v, KEY1.as_bytes());
        v.extend_from_slice(&[1, 1, 1, b'k']);
        put_int(&mut v, -300);
        put_uint(&mut v, 1);
        put_int(&mut v, 42);
        put_uint(&mut v, 1);
        put_uint(&mut v, 1);
        put_bytes(&mut v, &[7; 32]);
        v.push(0);
        put_message(&mut out, &v);
        let (meta, _) = NodeMeta::decode(&out).unwrap();
        assert_eq!(meta, NodeMeta::new(ip("10.0.0.7"), KEY1.into()));
    }
}
