//! `wesher status --prometheus`: the status reply in the Prometheus text exposition format
//! (version 0.0.4), for node_exporter's textfile collector or prometheus-node-exporter-lua.
//! Every sample carries an `interface` label, so the files of several clusters can sit side by
//! side.

use std::fmt::Write;

use crate::control::{text, Status};
use crate::json::{self, Value};
use crate::membership::Stats;
use crate::transport::TransportStats;

/// The agent's counters since it started, as the status reply carries them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub streams_in: u64,
    pub streams_out: u64,
    /// Dropped or refused gossip input and failed sends, by reason.
    pub drops: Vec<DropCount>,
    /// Join requests sent (one per address tried).
    pub join_attempts: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DropCount {
    pub reason: String,
    pub count: u64,
}

impl Counters {
    /// As the status reply carries them.
    pub fn write(&self, out: &mut String) {
        let mut o = json::Object::new(out);
        o.u64("packets_in", self.packets_in)
            .u64("packets_out", self.packets_out)
            .u64("bytes_in", self.bytes_in)
            .u64("bytes_out", self.bytes_out)
            .u64("streams_in", self.streams_in)
            .u64("streams_out", self.streams_out);
        json::array(o.key("drops"), &self.drops, |out, d| {
            let mut drop = json::Object::new(out);
            drop.str("reason", &d.reason).u64("count", d.count);
            drop.end();
        });
        o.u64("join_attempts", self.join_attempts);
        o.end();
    }

    pub fn read(v: &Value) -> Option<Counters> {
        let n = |name| v.get(name)?.as_u64();
        Some(Counters {
            packets_in: n("packets_in")?,
            packets_out: n("packets_out")?,
            bytes_in: n("bytes_in")?,
            bytes_out: n("bytes_out")?,
            streams_in: n("streams_in")?,
            streams_out: n("streams_out")?,
            drops: (v.get("drops")?.as_array()?.iter())
                .map(|d| {
                    Some(DropCount {
                        reason: text(d, "reason")?,
                        count: d.get("count")?.as_u64()?,
                    })
                })
                .collect::<Option<_>>()?,
            join_attempts: n("join_attempts")?,
        })
    }

    /// The membership core's counters and the transport's, in one list of drop reasons.
    pub fn new(core: &Stats, transport: &TransportStats, join_attempts: u64) -> Counters {
        let mut drops: Vec<DropCount> = core
            .drops
            .iter()
            .map(|(reason, count)| DropCount {
                reason: (*reason).into(),
                count: *count,
            })
            .collect();
        for (reason, count) in [
            ("send_error", transport.datagram_send_errors),
            ("streams_refused", transport.streams_rejected),
            ("stream_error", transport.stream_errors),
        ] {
            if count > 0 {
                drops.push(DropCount {
                    reason: reason.into(),
                    count,
                });
            }
        }
        Counters {
            packets_in: core.packets_in,
            packets_out: core.packets_out,
            bytes_in: core.bytes_in,
            bytes_out: core.bytes_out,
            streams_in: core.streams_in,
            streams_out: core.streams_out,
            drops,
            join_attempts,
        }
    }
}

/// The member states counted by `wesher_members`, always all of them (zeros included).
const STATES: [&str; 4] = ["alive", "suspect", "dead", "left"];

/// A label value, escaped as the format wants.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// One metric family at a time: HELP and TYPE once, then its samples.
struct Out {
    text: String,
    iface: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        let _ = write!(self.text, "{name}{{interface=\"{}\"", self.iface);
        for (k, v) in labels {
            let _ = write!(self.text, ",{k}=\"{}\"", escape(v));
        }
        let _ = writeln!(self.text, "}} {value}");
    }
}

/// The exposition text for one agent's status.
pub fn render(status: &Status) -> String {
    let mut out = Out {
        text: String::new(),
        iface: escape(&status.interface),
    };
    let c = &status.counters;
    out.family(
        "wesher_members",
        "gauge",
        "Other members of the cluster by state.",
    );
    for state in STATES {
        let n = status.members.iter().filter(|m| m.state == state).count();
        out.sample("wesher_members", &[("state", state)], n as u64);
    }
    out.family(
        "wesher_peer_last_handshake_age_seconds",
        "gauge",
        "Seconds since the last WireGuard handshake with a member (absent before the first).",
    );
    for m in &status.members {
        if let Some(age) = m.handshake_age_secs {
            let labels = [("member", m.name.as_str()), ("overlay", m.overlay.as_str())];
            out.sample("wesher_peer_last_handshake_age_seconds", &labels, age);
        }
    }
    for (name, help, pick) in [
        (
            "wesher_peer_receive_bytes_total",
            "Bytes received from a member over WireGuard.",
            (|m: &crate::control::MemberStatus| m.rx_bytes) as fn(&_) -> u64,
        ),
        (
            "wesher_peer_transmit_bytes_total",
            "Bytes sent to a member over WireGuard.",
            |m| m.tx_bytes,
        ),
    ] {
        out.family(name, "counter", help);
        for m in &status.members {
            let labels = [("member", m.name.as_str()), ("overlay", m.overlay.as_str())];
            out.sample(name, &labels, pick(m));
        }
    }
    for (name, help, inbound, outbound) in [
        (
            "wesher_gossip_packets_total",
            "Gossip UDP packets.",
            c.packets_in,
            c.packets_out,
        ),
        (
            "wesher_gossip_bytes_total",
            "Gossip bytes, UDP and TCP.",
            c.bytes_in,
            c.bytes_out,
        ),
        (
            "wesher_gossip_streams_total",
            "Gossip TCP streams (joins and push-pull syncs).",
            c.streams_in,
            c.streams_out,
        ),
    ] {
        out.family(name, "counter", help);
        out.sample(name, &[("direction", "in")], inbound);
        out.sample(name, &[("direction", "out")], outbound);
    }
    out.family(
        "wesher_gossip_drops_total",
        "counter",
        "Gossip input dropped or refused, and failed sends, by reason.",
    );
    for d in &c.drops {
        out.sample(
            "wesher_gossip_drops_total",
            &[("reason", &d.reason)],
            d.count,
        );
    }
    out.family(
        "wesher_join_attempts_total",
        "counter",
        "Join requests sent, one per address tried.",
    );
    out.sample("wesher_join_attempts_total", &[], c.join_attempts);
    out.text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::MemberStatus;

    #[test]
    fn families_are_typed_once_and_labels_escaped() {
        let m = |name: &str, state: &str, hs| MemberStatus {
            name: name.into(),
            overlay: "10.0.0.2".into(),
            underlay: "192.0.2.2:7946".into(),
            state: state.into(),
            public_key: String::new(),
            handshake_age_secs: hs,
            rx_bytes: 7,
            tx_bytes: 9,
        };
        let status = Status {
            version: crate::control::STATUS_VERSION,
            interface: "wg\"x".into(),
            node: m("me", "alive", None),
            members: vec![m("a", "alive", Some(4)), m("b\\", "dead", None)],
            counters: Counters {
                packets_in: 3,
                drops: vec![DropCount {
                    reason: "decrypt".into(),
                    count: 2,
                }],
                join_attempts: 1,
                ..Default::default()
            },
        };
        let text = render(&status);
        for line in [
            r#"wesher_members{interface="wg\"x",state="alive"} 1"#,
            r#"wesher_members{interface="wg\"x",state="suspect"} 0"#,
            r#"wesher_members{interface="wg\"x",state="dead"} 1"#,
            r#"wesher_peer_last_handshake_age_seconds{interface="wg\"x",member="a",overlay="10.0.0.2"} 4"#,
            r#"wesher_peer_receive_bytes_total{interface="wg\"x",member="b\\",overlay="10.0.0.2"} 7"#,
            r#"wesher_gossip_packets_total{interface="wg\"x",direction="in"} 3"#,
            r#"wesher_gossip_drops_total{interface="wg\"x",reason="decrypt"} 2"#,
            r#"wesher_join_attempts_total{interface="wg\"x"} 1"#,
            "# TYPE wesher_gossip_bytes_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert_eq!(text.matches("# TYPE wesher_members ").count(), 1);
        assert!(!text.contains("handshake_age_seconds{interface=\"wg\\\"x\",member=\"b"));
    }
}
