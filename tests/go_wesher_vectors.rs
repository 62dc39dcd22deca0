//! Node metadata and state files written by real Go wesher 8887b51 builds made with three Go
//! releases (tests/vectors/go-wesher-*, captured from pure Go meshes): gob numbers the types
//! differently per release, and every blob must decode, whichever numbering it uses; our
//! encoding must stay byte-identical to what Go sends.

mod common;

use common::hex;
use std::net::IpAddr;
use std::path::Path;

use wesher::gob::Reader;
use wesher::nodemeta::{MetaFormat, NodeMeta};
use wesher::state;

const NODEMETA: &str = include_str!("vectors/go-wesher-nodemeta.txt");
const STATES: [(&str, &str); 3] = [
    (
        "go1.19.8",
        include_str!("vectors/go-wesher-state-go1.19.8.json"),
    ),
    (
        "go1.21.13",
        include_str!("vectors/go-wesher-state-go1.21.13.json"),
    ),
    (
        "go1.23.5",
        include_str!("vectors/go-wesher-state-go1.23.5.json"),
    ),
];

struct Row {
    go: String,
    node: String,
    overlay: IpAddr,
    pub_key: String,
    gob: Vec<u8>,
}

fn rows() -> Vec<Row> {
    NODEMETA
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 5, "row {l:?}");
            Row {
                go: f[0].into(),
                node: f[1].into(),
                overlay: f[2].parse().expect("overlay address"),
                pub_key: f[3].into(),
                gob: hex(f[4]),
            }
        })
        .collect()
}

/// The id the first message of a gob stream defines (a type definition has a negative id).
fn first_type_id(gob: &[u8]) -> i64 {
    let mut r = Reader::new(gob);
    r.uint().expect("message length");
    -r.int().expect("type id")
}

#[test]
fn the_vectors_cover_both_numberings_and_both_address_families() {
    let rows = rows();
    assert_eq!(rows.len(), 6);
    for row in &rows {
        let want = if row.go == "go1.19.8" { 65 } else { 64 };
        assert_eq!(first_type_id(&row.gob), want, "{} {}", row.go, row.node);
    }
    assert_eq!(rows.iter().filter(|r| r.overlay.is_ipv6()).count(), 3);
}

#[test]
fn metadata_from_every_go_build_decodes() {
    for row in rows() {
        let (meta, format) = NodeMeta::decode(&row.gob)
            .unwrap_or_else(|e| panic!("{} {} {}: {e}", row.go, row.node, row.overlay));
        assert_eq!(format, MetaFormat::V03);
        assert_eq!(meta.overlay_addr, row.overlay, "{} {}", row.go, row.node);
        assert_eq!(meta.pub_key, row.pub_key);
        assert!(meta.extras.is_empty());
    }
}

#[test]
fn our_encoding_equals_the_go_1_19_builds_and_others_differ_only_in_ids() {
    for row in rows() {
        let ours = NodeMeta::new(row.overlay, row.pub_key.clone())
            .encode()
            .expect("encode");
        if row.go == "go1.19.8" {
            assert_eq!(ours, row.gob, "{}", row.overlay);
        } else {
            // Ids 64/65 instead of 65/66: all take two bytes but the struct's definition, -64,
            // which takes one (0x7f against 0xff 0x81).
            assert_eq!(ours.len(), row.gob.len() + 1, "{}", row.overlay);
            assert_eq!(
                NodeMeta::decode(&ours).expect("decode ours").0,
                NodeMeta::decode(&row.gob).expect("decode Go's").0
            );
        }
    }
}

#[test]
fn state_files_written_by_every_go_build_load_with_their_metadata() {
    let rows = rows();
    for (go, text) in STATES {
        let (st, warnings) = state::parse(text.as_bytes(), Path::new(go)).expect(go);
        assert!(warnings.is_empty(), "{go}: {warnings:?}");
        let key: Vec<u8> = (0..32).collect();
        assert_eq!(
            st.cluster_key.as_ref().map(|k| k.as_bytes().to_vec()),
            Some(key),
            "{go}"
        );
        // Each file lists the two other nodes of a three-node mesh, one per other Go build.
        assert_eq!(st.nodes.len(), 2, "{go}");
        for node in &st.nodes {
            let row = rows
                .iter()
                .find(|r| r.node == node.name && r.overlay.is_ipv4())
                .unwrap_or_else(|| panic!("{go}: no vector for {}", node.name));
            assert_ne!(row.go, go, "a state file never lists its own node");
            assert_eq!(node.meta, row.gob, "{go}: {}", node.name);
            let n: u8 = node
                .name
                .trim_start_matches("node")
                .parse()
                .expect("node<i>");
            assert_eq!(node.addr, IpAddr::from([10, 97, 0, n]));
        }
    }
}
