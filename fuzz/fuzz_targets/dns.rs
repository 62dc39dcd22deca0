//! DNS replies, as a nameserver (or anyone on the path) may send them: any datagram to any of
//! our queries is a reply or not, never a panic or a loop. A reply's addresses are of the type
//! asked, none twice; and the same bytes fed to a lookup leave it in a sane state. The first
//! bytes choose the query; a copy of its header and question heads the rest, so that the
//! fuzzer reaches the answer section (compression pointers, CNAME chains, cuts).
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use wesher::dns::conf::ResolvConf;
use wesher::dns::lookup::Lookup;
use wesher::dns::message::{parse_reply, query, TYPE_A, TYPE_AAAA};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let names = ["seed", "seed.lan", "a.b.example.net"];
    let name = names[usize::from(choice) % names.len()];
    let qtype = if choice & 0x80 == 0 { TYPE_A } else { TYPE_AAAA };
    let id = 0x4242;
    let q = query(id, name, qtype);
    // Bit 6: the bytes as they are; otherwise after our query's header and question.
    let packet = if choice & 0x40 != 0 {
        rest.to_vec()
    } else {
        let mut p = q.clone();
        p[2] |= 0x80;
        p.extend_from_slice(rest);
        p
    };
    if let Some(reply) = parse_reply(&packet, &q) {
        for (i, ip) in reply.addrs.iter().enumerate() {
            assert_eq!(ip.is_ipv6(), qtype == TYPE_AAAA, "{ip}");
            assert!(!reply.addrs[..i].contains(ip), "{ip} twice");
        }
    }
    let conf = ResolvConf::parse("nameserver 10.0.0.1\nsearch lan\n");
    let now = Instant::now();
    let mut lookup = Lookup::new(now, name, "", &conf, [id; 14]);
    let server: SocketAddr = "10.0.0.1:53".parse().unwrap();
    lookup.handle_datagram(now, server, &packet);
    match lookup.outcome() {
        Some(Ok(ips)) => assert!(!ips.is_empty()),
        Some(Err(_)) => assert_eq!(lookup.next_deadline(), None),
        None => assert!(lookup.next_deadline().is_some()),
    }
});
