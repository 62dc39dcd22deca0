//! Our gob codec for node metadata against Go's own encoding/gob, built with each Go toolchain
//! (tests/common/go.rs: Debian's 1.19 and a newer one from bookworm-backports, which number gob
//! types differently). tests/gob/gobgen emits Go's encodings of many nodeMeta variants (ids
//! shifted by types encoded before, fields in other orders, extra fields of every wire type,
//! zero values, the v0.2 and v0.3 layouts) with what Go decoded from each; our decoder must
//! agree on every one. Then Go decodes what we encode.
//!
//! One deliberate difference: an OverlayAddr with an IPv6 zone (which Go's netip.Addr keeps) is
//! refused, since a WireGuard overlay address has none and Rust's IpAddr cannot hold one.
//!
//! Without Go the tests skip with a reason; with CI=true a missing toolchain fails.

mod common;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use miniserde::json::{self, Object, Value};
use wesher::base64;
use wesher::nodemeta::{Extra, ExtraValue, MetaFormat, NodeMeta};

/// gobgen built with every toolchain there is: (Go version, binary).
fn gobgens() -> &'static [(String, PathBuf)] {
    static BUILT: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gob/gobgen");
        common::go::toolchains()
            .iter()
            .map(|go| (go.version.clone(), go.build(&dir, "gobgen").unwrap()))
            .collect()
    })
}

fn text<'a>(obj: &'a Object, key: &str) -> &'a str {
    match obj.get(key) {
        Some(Value::String(s)) => s,
        other => panic!("gobgen line without {key}: {other:?}"),
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id the first message defines: it starts with -id, a zig-zag int after the length.
fn first_type_id(blob: &[u8]) -> u64 {
    let mut pos = 0;
    let mut uint = || {
        let first = blob[pos];
        pos += 1;
        if first < 128 {
            return u64::from(first);
        }
        let n = 256 - usize::from(first);
        pos += n;
        blob[pos - n..pos]
            .iter()
            .fold(0, |v, b| v << 8 | u64::from(*b))
    };
    uint();
    (uint() >> 1) + 1
}

/// What Go decoded, as our decoder must give it: None where we must refuse the blob.
fn expected(line: &Object) -> Option<(NodeMeta, MetaFormat)> {
    if !text(line, "error").is_empty() {
        return None;
    }
    let overlay: IpAddr = text(line, "overlay").parse().ok()?;
    let pub_key = text(line, "pubkey");
    base64::decode_key(pub_key).ok()?;
    let format = match text(line, "layout") {
        "v02" => MetaFormat::V02,
        _ => MetaFormat::V03,
    };
    let mut meta = NodeMeta::new(overlay, pub_key.into());
    let Some(Value::Array(extras)) = line.get("extras") else {
        panic!("gobgen line without extras");
    };
    for extra in extras {
        let Value::Object(extra) = extra else {
            panic!("extra {extra:?}")
        };
        let Some(Value::Array(items)) = extra.get("items") else {
            panic!("items")
        };
        let items = items.iter().map(|i| match i {
            Value::String(s) => s.as_str(),
            other => panic!("item {other:?}"),
        });
        // Extras we cannot represent (not UTF-8, an address with a zone) are skipped.
        let value = match text(extra, "kind") {
            "strings" => items
                .map(|h| String::from_utf8(hex(h)).ok())
                .collect::<Option<_>>()
                .map(ExtraValue::Strings),
            _ => items
                .map(|a| a.parse().ok())
                .collect::<Option<_>>()
                .map(ExtraValue::Addrs),
        };
        if let Some(value) = value {
            meta.extras.push(Extra {
                name: text(extra, "name").into(),
                value,
            });
        }
    }
    Some((meta, format))
}

fn sorted(mut got: (NodeMeta, MetaFormat)) -> (NodeMeta, MetaFormat) {
    got.0.extras.sort_by(|a, b| a.name.cmp(&b.name));
    got
}

#[test]
fn our_decoder_agrees_with_go_on_every_variant() {
    for (version, gobgen) in gobgens() {
        let (mut agreed, mut refused, mut ids) = (0, 0, std::collections::BTreeSet::new());
        // Other types encoded first: none, a few, then enough for ids past 127 (two bytes) and
        // past 255. (Three-byte ids take Go minutes to reach; src/gob.rs tests them.)
        for shift in [0, 1, 70, 300, 1000] {
            let out = Command::new(gobgen)
                .args(["emit", &shift.to_string()])
                .output()
                .unwrap();
            assert!(out.status.success(), "gobgen emit ({version}) failed");
            for line in String::from_utf8(out.stdout).unwrap().lines() {
                let line: Object = json::from_str(line).unwrap();
                let (name, blob) = (text(&line, "name"), hex(text(&line, "hex")));
                ids.insert(first_type_id(&blob));
                let ours = NodeMeta::decode(&blob);
                match expected(&line) {
                    Some(want) => {
                        let got =
                            ours.unwrap_or_else(|e| panic!("{version} {shift} {name:?}: {e}"));
                        assert_eq!(sorted(got), sorted(want), "{version} {shift} {name:?}");
                        agreed += 1;
                    }
                    None => {
                        let e = ours.expect_err(&format!(
                            "{version} {shift} {name:?}: Go's decoding is unusable"
                        ));
                        assert!(!e.to_string().is_empty());
                        refused += 1;
                    }
                }
            }
        }
        eprintln!(
            "{version}: {agreed} variants decoded alike, {refused} refused alike, first type ids {ids:?}"
        );
        assert!(
            agreed >= 500 && refused >= 100,
            "{version}: too few variants"
        );
        assert!(ids.iter().any(|id| *id < 128) && ids.iter().any(|id| *id > 1000));
    }
}

/// A small deterministic generator, so failures repeat.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize % n
    }
}

fn our_variants() -> Vec<NodeMeta> {
    let addrs = [
        "10.59.73.60",
        "0.0.0.0",
        "2001:db8::1",
        "::ffff:10.1.2.3",
        "fd00:1:2::3",
        "255.255.255.255",
    ];
    let strings = [
        "",
        "keeps-sessions",
        "fixed-overlay",
        "192.168.1.0/24",
        "fd00::/64",
        "ü→✓",
        "0123456789abcdef",
    ];
    let names = ["Caps", "RoutedNets", "Candidates", "X", "MoreNets", "A_1"];
    let mut rng = Lcg(7);
    let mut out = Vec::new();
    for i in 0..300 {
        let ip = |rng: &mut Lcg| addrs[rng.next(addrs.len())].parse().unwrap();
        let mut meta = NodeMeta::new(ip(&mut rng), base64::encode(&[i as u8; 32]));
        let mut used = Vec::new();
        for _ in 0..rng.next(4) {
            let name = names[rng.next(names.len())];
            if used.contains(&name) {
                continue;
            }
            used.push(name);
            let n = rng.next(5);
            let value = if rng.next(2) == 0 {
                ExtraValue::Strings(
                    (0..n)
                        .map(|_| strings[rng.next(strings.len())].into())
                        .collect(),
                )
            } else {
                ExtraValue::Addrs((0..n).map(|_| ip(&mut rng)).collect())
            };
            meta.extras.push(Extra {
                name: name.into(),
                value,
            });
        }
        out.push(meta);
    }
    out
}

#[test]
fn go_decodes_everything_we_encode() {
    let metas = our_variants();
    let mut input = String::new();
    let mut sent = Vec::new();
    for meta in &metas {
        let Ok(blob) = meta.encode() else { continue };
        input += &to_hex(&blob);
        for e in &meta.extras {
            let kind = if matches!(e.value, ExtraValue::Addrs(_)) {
                "a"
            } else {
                "s"
            };
            input += &format!(" {}:{kind}", e.name);
        }
        input.push('\n');
        sent.push(meta);
    }
    assert!(
        sent.len() > 250,
        "only {} of our variants encoded",
        sent.len()
    );
    for (version, gobgen) in gobgens() {
        let mut child = Command::new(gobgen)
            .arg("decode")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feed = input.clone();
        let writer = std::thread::spawn(move || stdin.write_all(feed.as_bytes()));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success(), "gobgen decode ({version}) failed");
        let lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(lines.len(), sent.len(), "{version}");
        for (line, meta) in lines.iter().zip(&sent) {
            let line: Object = json::from_str(line).unwrap();
            assert_eq!(
                text(&line, "error"),
                "",
                "{version}: Go could not decode {meta:?}"
            );
            let mut want = (*meta).clone();
            want.extras.retain(|e| match &e.value {
                ExtraValue::Strings(v) => !v.is_empty(),
                ExtraValue::Addrs(v) => !v.is_empty(),
            });
            assert_eq!(
                expected(&line).map(sorted),
                Some(sorted((want, MetaFormat::V03))),
                "{version}"
            );
        }
        eprintln!("{version}: decoded all {} of our encodings", sent.len());
    }
}
