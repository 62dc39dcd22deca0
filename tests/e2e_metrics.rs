//! `wesher status --prometheus` of real agents (network namespaces, wireguard-go) parses as the
//! Prometheus text exposition format 0.0.4 and says what happened: a strict parser below (Debian's
//! promtool comes only in the 96 MB `prometheus` package), checked against a known mesh.

mod beyond_support;
mod common;

use std::collections::{BTreeMap, BTreeSet};

use beyond_support::{client, start, wait_ping};
use common::netns::{Topology, CLUSTER_KEY};

type Labels = Vec<(String, String)>;
/// A series: metric name and sorted labels.
type Series = (String, Labels);
/// Every series with its value, and the type of every family.
type Parsed = (BTreeMap<Series, f64>, BTreeMap<String, String>);

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// `{a="x",b="y"}` from the start of `s`; returns the labels and the rest.
fn labels(s: &str) -> Result<(Labels, &str), String> {
    let Some(mut rest) = s.strip_prefix('{') else {
        return Ok((Vec::new(), s));
    };
    let mut out: Labels = Vec::new();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let (name, r) = rest.split_once("=\"").ok_or("label without =\"")?;
        if !is_name(name, false) || name.starts_with("__") {
            return Err(format!("bad label name {name:?}"));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice"));
        }
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, '\n') => return Err("newline in a label value".into()),
                (_, c) => value.push(c),
            }
        };
        out.push((name.to_string(), value));
        rest = &r[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses the whole text strictly; every series with its value and the family types.
fn parse(text: &str) -> Result<Parsed, String> {
    let mut series = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps = BTreeSet::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        let mut family_starts = |name: &str| -> Result<(), String> {
            if current.as_deref() != Some(name) {
                if done.contains(name) {
                    return Err(format!("family {name} is not contiguous"));
                }
                if let Some(c) = current.take() {
                    done.insert(c);
                }
                current = Some(name.to_string());
            }
            Ok(())
        };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !is_name(name, true) || !helps.insert(name.to_string()) {
                return Err(err("bad or repeated HELP".into()));
            }
            family_starts(name).map_err(err)?;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| err("TYPE".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(err(format!("type {kind}")));
            }
            family_starts(name).map_err(err)?;
            if series.keys().any(|(n, _): &Series| n == name) {
                return Err(err("TYPE after samples".into()));
            }
            if types.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(err("TYPE twice".into()));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        family_starts(name).map_err(err)?;
        let (mut labels, rest) = labels(&line[name_end..]).map_err(err)?;
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before the value".into()))?
            .split(' ');
        let value = match fields.next().unwrap_or_default() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| err(format!("bad value {v:?}")))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| err(format!("bad timestamp {ts:?}")))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        if types.get(name).map(String::as_str) == Some("counter") && value < 0.0 {
            return Err(err("negative counter".into()));
        }
        labels.sort();
        if series.insert((name.to_string(), labels), value).is_some() {
            return Err(err("series twice".into()));
        }
    }
    Ok((series, types))
}

fn get(series: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    series.get(&(name.to_string(), l)).copied()
}

#[test]
fn the_parser_is_strict() {
    assert!(parse("a 1\n").is_ok());
    for bad in [
        "a 1",
        "a{b=\"x\"} 1\nc 2\na{b=\"y\"} 3\n",
        "a{b=\"x\\t\"} 1\n",
        "a{b=\"x\",b=\"y\"} 1\n",
        "a 1\na 2\n",
        "a x\n",
        "1a 1\n",
        "a 1\n# TYPE a counter\n",
        "# TYPE a counter\n# TYPE a counter\n",
        "# TYPE a counter\na -1\n",
        "a  1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn status_prometheus_of_a_real_mesh_parses_and_counts() {
    let Some(topo) = Topology::new(2) else { return };
    let _wg = topo.start_wireguard_all(common::netns::DEFAULT_IFACE);
    let (n1, n2) = (topo.node(1), topo.node(2));
    let seed = n1.ip.to_string();
    let mut agents = vec![
        start(n1, CLUSTER_KEY, None, &[]),
        start(n2, CLUSTER_KEY, Some(&seed), &[]),
    ];
    wait_ping(n2, "node1", &mut agents);
    let out = client(n2, &["status", "--prometheus"]);
    assert!(out.success(), "{out}");
    let (series, types) = parse(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.stdout));
    let iface = ("interface", "wgoverlay");
    assert_eq!(
        get(&series, "wesher_members", &[iface, ("state", "alive")]),
        Some(1.0),
        "{}",
        out.stdout
    );
    assert_eq!(
        get(&series, "wesher_members", &[iface, ("state", "dead")]),
        Some(0.0)
    );
    let overlay1 = n1.overlay_addr(common::netns::DEFAULT_IFACE).unwrap();
    let peer = [iface, ("member", "node1"), ("overlay", overlay1.as_str())];
    let age = get(&series, "wesher_peer_last_handshake_age_seconds", &peer);
    assert!(age.is_some_and(|a| a >= 0.0), "{}", out.stdout);
    for name in [
        "wesher_peer_receive_bytes_total",
        "wesher_peer_transmit_bytes_total",
    ] {
        assert!(
            get(&series, name, &peer).is_some_and(|b| b > 0.0),
            "{name}: {}",
            out.stdout
        );
    }
    for name in ["wesher_gossip_packets_total", "wesher_gossip_bytes_total"] {
        for dir in ["in", "out"] {
            assert!(
                get(&series, name, &[iface, ("direction", dir)]).is_some_and(|v| v > 0.0),
                "{name} {dir}: {}",
                out.stdout
            );
        }
    }
    // node2 joined through node1: one TCP stream out at least.
    assert!(get(
        &series,
        "wesher_gossip_streams_total",
        &[iface, ("direction", "out")]
    )
    .is_some_and(|v| v >= 1.0));
    assert!(get(&series, "wesher_join_attempts_total", &[iface]).is_some_and(|v| v >= 1.0));
    for (name, kind) in &types {
        assert_eq!(
            name.ends_with("_total"),
            kind == "counter",
            "{name} is a {kind}"
        );
    }
    assert!(types.contains_key("wesher_gossip_drops_total"));
}
