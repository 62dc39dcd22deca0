//! DNS messages as a stub resolver needs them (RFC 1035): one question out, the address records
//! of the reply in. UDP only, no EDNS: a reply is at most 512 bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const TYPE_CNAME: u16 = 5;
const CLASS_IN: u16 = 1;
const HEADER: usize = 12;
/// The largest reply over UDP without EDNS (RFC 1035 4.2.1); longer datagrams are cut.
pub const MAX_UDP: usize = 512;
/// A name in wire form is at most 255 bytes (RFC 1035 2.3.4).
const MAX_WIRE_NAME: usize = 255;

/// The query for `name` (checked by the caller: labels of 1 to 63 bytes, no trailing dot) with
/// recursion desired.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(HEADER + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    // Flags RD; one question, no other records.
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
    /// SERVFAIL, REFUSED or any other error: this server could not answer.
    Failure,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub rcode: Rcode,
    /// TC: the server cut the reply; the records before the cut are in `addrs`.
    pub truncated: bool,
    /// The records of the queried type owned by the queried name or a CNAME target of it.
    pub addrs: Vec<IpAddr>,
}

/// `packet` read as the reply to `query` (the bytes we sent), or None when it is not one: another
/// ID, not a response, another question, or malformed (unless cut under TC, see `Reply`).
pub fn parse_reply(packet: &[u8], query: &[u8]) -> Option<Reply> {
    let question = query.get(HEADER..)?;
    let qtype = u16::from_be_bytes([query[query.len() - 4], query[query.len() - 3]]);
    let (flags, rest) = (packet.get(2..4)?, packet.get(HEADER..)?);
    // The same ID, QR set, opcode 0 (QUERY), one question, and the question ours (servers echo
    // it verbatim, but may change its case).
    if packet[..2] != query[..2]
        || flags[0] & 0xf8 != 0x80
        || packet[4..6] != [0, 1]
        || !rest.get(..question.len())?.eq_ignore_ascii_case(question)
    {
        return None;
    }
    let truncated = flags[0] & 0x02 != 0;
    let rcode = match flags[1] & 0x0f {
        0 => Rcode::NoError,
        3 => Rcode::NxDomain,
        _ => Rcode::Failure,
    };
    let count = u16::from_be_bytes([packet[6], packet[7]]);
    // The owners we accept: the queried name, then the targets of CNAMEs owned by an accepted
    // name, in whatever order the records come: the answers are read again while a pass adds
    // one (a chain of N names takes N passes; the reply is at most 512 bytes).
    let mut names = vec![question[..question.len() - 4].to_ascii_lowercase()];
    let (mut owner, mut target) = (Vec::new(), Vec::new());
    let mut addrs = Vec::new();
    loop {
        let mut at = HEADER + question.len();
        let known = names.len();
        for _ in 0..count {
            let Some((rtype, rdata, next)) = record(packet, at, &mut owner) else {
                // A cut reply keeps what came before the cut.
                if truncated {
                    break;
                }
                return None;
            };
            at = next;
            if !names.contains(&owner) {
                continue;
            }
            if rtype == TYPE_CNAME {
                read_name(packet, rdata, &mut target)?;
                if !names.contains(&target) {
                    names.push(target.clone());
                }
            } else if rtype == qtype && names.len() == known {
                let data = &packet[rdata..next];
                let ip = match (qtype, data.len()) {
                    (TYPE_A, 4) => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?)),
                    (TYPE_AAAA, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?)),
                    _ => continue,
                };
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
            }
        }
        if names.len() == known {
            break;
        }
        addrs.clear();
    }
    Some(Reply {
        rcode,
        truncated,
        addrs,
    })
}

/// The record at `at`: its owner read into `owner` (emptied for classes other than IN), its
/// type, where its data starts, and the offset after it.
fn record(msg: &[u8], at: usize, owner: &mut Vec<u8>) -> Option<(u16, usize, usize)> {
    let at = read_name(msg, at, owner)?;
    let fixed = msg.get(at..at + 10)?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let len = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
    let start = at + 10;
    msg.get(start..start + len)?;
    if class != CLASS_IN {
        owner.clear();
    }
    Some((rtype, start, start + len))
}

/// Reads the name at `at`, following compression pointers, into `out` in wire form and
/// lowercase; returns the offset after the name where it is written. Each pointer must point
/// before the previous one's target (before the name, for the first): the offsets fall, so no
/// loop can last, and every encoder writes the suffix it points to first.
fn read_name(msg: &[u8], mut at: usize, out: &mut Vec<u8>) -> Option<usize> {
    out.clear();
    let mut limit = at;
    let mut end = None;
    loop {
        let len = *msg.get(at)? as usize;
        match len {
            0 => {
                out.push(0);
                return Some(end.unwrap_or(at + 1));
            }
            1..=63 => {
                let label = msg.get(at + 1..at + 1 + len)?;
                if out.len() + 1 + len + 1 > MAX_WIRE_NAME {
                    return None;
                }
                out.push(len as u8);
                out.extend(label.iter().map(u8::to_ascii_lowercase));
                at += 1 + len;
            }
            0xc0.. => {
                let target = (len & 0x3f) << 8 | *msg.get(at + 1)? as usize;
                if target >= limit {
                    return None;
                }
                end.get_or_insert(at + 2);
                limit = target;
                at = target;
            }
            // 0x40 and 0x80: extended label types, not in use.
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to `query`: its header with QR (and `flags`, `rcode`), its question, then `answers`
    /// (already encoded) counted in ANCOUNT.
    fn reply(query: &[u8], flags: u8, rcode: u8, answers: &[Vec<u8>]) -> Vec<u8> {
        let mut r = query.to_vec();
        r[2] = 0x80 | flags | (query[2] & 1);
        r[3] = 0x80 | rcode;
        r[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for a in answers {
            r.extend_from_slice(a);
        }
        r
    }

    /// A record: `owner` already in wire form (labels or a pointer), type, class IN, TTL 60.
    fn rr(owner: &[u8], rtype: u16, data: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&60u32.to_be_bytes());
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(data);
        r
    }

    fn wire(name: &str) -> Vec<u8> {
        let q = query(0, name, TYPE_A);
        q[HEADER..q.len() - 4].to_vec()
    }

    /// A pointer to the question's name, right after the header.
    const QNAME: [u8; 2] = [0xc0, 12];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_query_is_one_question_with_recursion_desired() {
        let q = query(0xbeef, "node2.lan", TYPE_AAAA);
        assert_eq!(
            q,
            b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05node2\x03lan\x00\x00\x1c\x00\x01"
        );
    }

    #[test]
    fn answers_are_read_through_compression_and_a_cname_chain() {
        let q = query(7, "seed.lan", TYPE_A);
        // seed.lan CNAME a.example (compressed: "a" + pointer to "lan"... here to the question's
        // second label), a.example CNAME b.example, b.example A 192.0.2.1 and 192.0.2.2; an A
        // of another name and an AAAA of the chain are not taken.
        let mut answers = vec![rr(&QNAME, TYPE_CNAME, b"\x01a\x07example\x00")];
        // "a.example" starts at the first CNAME's rdata: header + question + 2 + 10.
        let a_at = (q.len() + 12) as u8;
        answers.push(rr(&[0xc0, a_at], TYPE_CNAME, &[1, b'b', 0xc0, a_at + 2]));
        let b_at = (q.len() + answers[0].len() + 12) as u8;
        answers.push(rr(&[0xc0, b_at], TYPE_A, &[192, 0, 2, 1]));
        answers.push(rr(&wire("other.lan"), TYPE_A, &[192, 0, 2, 9]));
        answers.push(rr(&[0xc0, b_at], TYPE_AAAA, &[0; 16]));
        answers.push(rr(b"\x01B\x07EXAMPLE\x00", TYPE_A, &[192, 0, 2, 2]));
        let r = parse_reply(&reply(&q, 0, 0, &answers), &q).unwrap();
        assert_eq!(r.rcode, Rcode::NoError);
        assert!(!r.truncated);
        assert_eq!(r.addrs, vec![ip("192.0.2.1"), ip("192.0.2.2")]);
    }

    #[test]
    fn a_cname_chain_is_followed_in_any_order() {
        let q = query(7, "seed.lan", TYPE_AAAA);
        let answers = vec![
            rr(&wire("b.lan"), TYPE_AAAA, &ip6("2001:db8::1")),
            rr(&wire("a.lan"), TYPE_CNAME, &wire("b.lan")),
            rr(&wire("SEED.lan"), TYPE_CNAME, &wire("a.lan")),
        ];
        let r = parse_reply(&reply(&q, 0, 0, &answers), &q).unwrap();
        assert_eq!(r.addrs, vec![ip("2001:db8::1")]);
    }

    fn ip6(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn replies_to_other_queries_are_not_ours() {
        let q = query(0x1234, "seed.lan", TYPE_A);
        let good = reply(&q, 0, 0, &[rr(&QNAME, TYPE_A, &[192, 0, 2, 1])]);
        assert!(parse_reply(&good, &q).is_some());
        let mut wrong_id = good.clone();
        wrong_id[1] ^= 1;
        assert_eq!(parse_reply(&wrong_id, &q), None);
        let mut not_response = good.clone();
        not_response[2] &= 0x7f;
        assert_eq!(parse_reply(&not_response, &q), None);
        // Another name, another type: a reply to some other query with our ID.
        let other = query(0x1234, "seex.lan", TYPE_A);
        assert_eq!(parse_reply(&reply(&other, 0, 0, &[]), &q), None);
        let aaaa = query(0x1234, "seed.lan", TYPE_AAAA);
        assert_eq!(parse_reply(&reply(&aaaa, 0, 0, &[]), &q), None);
        // The question's case may change (DNS 0x20).
        let upper = query(0x1234, "SEED.Lan", TYPE_A);
        let r = parse_reply(
            &reply(&upper, 0, 0, &[rr(&QNAME, TYPE_A, &[192, 0, 2, 1])]),
            &q,
        );
        assert_eq!(r.unwrap().addrs, vec![ip("192.0.2.1")]);
    }

    #[test]
    fn error_codes_are_reported() {
        let q = query(1, "seed.lan", TYPE_A);
        for (code, rcode) in [
            (3, Rcode::NxDomain),
            (2, Rcode::Failure),
            (5, Rcode::Failure),
            (0, Rcode::NoError),
        ] {
            let r = parse_reply(&reply(&q, 0, code, &[]), &q).unwrap();
            assert_eq!((r.rcode, r.addrs.len()), (rcode, 0));
        }
    }

    #[test]
    fn truncated_and_garbage_replies() {
        let q = query(1, "seed.lan", TYPE_A);
        let answers = [
            rr(&QNAME, TYPE_A, &[192, 0, 2, 1]),
            rr(&QNAME, TYPE_A, &[192, 0, 2, 2]),
        ];
        let whole = reply(&q, 0, 0, &answers);
        // Cut in the second record: without TC it is garbage, with TC the first record counts.
        let cut = &whole[..whole.len() - 3];
        assert_eq!(parse_reply(cut, &q), None);
        let mut tc = cut.to_vec();
        tc[2] |= 0x02;
        let r = parse_reply(&tc, &q).unwrap();
        assert!(r.truncated);
        assert_eq!(r.addrs, vec![ip("192.0.2.1")]);
        // Every prefix of a reply parses or not, without panicking.
        for n in 0..whole.len() {
            let _ = parse_reply(&whole[..n], &q);
        }
        // An A record of the wrong length is skipped.
        let odd = reply(&q, 0, 0, &[rr(&QNAME, TYPE_A, &[192, 0, 2])]);
        assert!(parse_reply(&odd, &q).unwrap().addrs.is_empty());
    }

    #[test]
    fn compression_pointers_cannot_loop() {
        let q = query(1, "seed.lan", TYPE_A);
        let at = q.len() as u8;
        // A pointer to itself, one forward, and two pointing at each other.
        for owner in [
            vec![0xc0, at],
            vec![0xc0, at + 2, 0],
            vec![1, b'x', 0xc0, at],
        ] {
            let r = reply(&q, 0, 0, &[rr(&owner, TYPE_A, &[192, 0, 2, 1])]);
            assert_eq!(parse_reply(&r, &q), None, "{owner:?}");
        }
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&[0xc0, 14, 0xc0, 12]);
        assert_eq!(read_name(&msg, 14, &mut Vec::new()), None);
        // A name longer than 255 bytes, made of pointers back to a chain of labels.
        let mut long = vec![0u8; 12];
        for _ in 0..5 {
            long.extend_from_slice(&[63; 64]);
        }
        long.push(0);
        assert_eq!(read_name(&long, 12, &mut Vec::new()), None);
    }
}
