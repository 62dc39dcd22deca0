//! The membership stack WITHOUT WireGuard: one memberlist node (Membership + Transport on a mio
//! loop) carrying wesher-shaped metadata (the 124-byte gob blob of an IPv4 overlay address and
//! a public key). For benchmarks next to Go memberlist (tests/interop/gopeer); not the agent.
//!
//! `gossip_node --name N --bind IP:PORT --key BASE64 [--join IP:PORT] [--profile wan|lan]`
//!
//! Prints `ready` once bound, `members N` whenever the alive count changes, and its traffic
//! counters on SIGTERM / SIGINT before exiting.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Instant;

use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use wesher::membership::{Config, Keyring, Membership, Timing};
use wesher::nodemeta::NodeMeta;
use wesher::transport::Transport;

const SIGNALS: Token = Token(0);

struct Args {
    name: String,
    bind: SocketAddr,
    key: [u8; 32],
    join: Option<SocketAddr>,
    timing: Timing,
}

fn parse_args() -> Result<Args, String> {
    use lexopt::prelude::*;
    let (mut name, mut bind, mut key, mut join) = (None, None, None, None);
    let mut timing = Timing::wan();
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        let value = |p: &mut lexopt::Parser| -> Result<String, String> {
            p.value()
                .map_err(|e| e.to_string())?
                .string()
                .map_err(|e| format!("{e:?}"))
        };
        match arg {
            Long("name") => name = Some(value(&mut p)?),
            Long("bind") => {
                bind = Some(value(&mut p)?.parse().map_err(|e| format!("--bind: {e}"))?)
            }
            Long("key") => key = Some(wesher::base64::decode_key(&value(&mut p)?)?),
            Long("join") => {
                join = Some(value(&mut p)?.parse().map_err(|e| format!("--join: {e}"))?)
            }
            Long("profile") => {
                timing = match value(&mut p)?.as_str() {
                    "wan" => Timing::wan(),
                    "lan" => Timing::lan(),
                    other => return Err(format!("unknown profile {other:?}")),
                }
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Args {
        name: name.ok_or("--name is required")?,
        bind: bind.ok_or("--bind is required")?,
        key: key.ok_or("--key is required")?,
        join,
        timing,
    })
}

/// Metadata shaped like wesher's: an overlay address derived from the name and a 44-character
/// public key, so packets have the size they have in a real mesh.
fn wesher_meta(name: &str) -> Result<Vec<u8>, String> {
    let h = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    let overlay = IpAddr::V4(Ipv4Addr::new(10, (h >> 16) as u8, (h >> 8) as u8, h as u8));
    let pub_key = wesher::base64::encode(&[h as u8; 32]);
    NodeMeta::new(overlay, pub_key)
        .encode()
        .map_err(|e| e.to_string())
}

fn run(args: Args) -> Result<(), String> {
    fn fail(what: &'static str) -> impl Fn(io::Error) -> String {
        move |e| format!("{what}: {e}")
    }
    let mut poll = Poll::new().map_err(fail("poll"))?;
    let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(fail("signals"))?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(fail("signals"))?;
    let mut transport = Transport::bind(poll.registry(), args.bind).map_err(fail("bind"))?;
    let seed = u64::from_le_bytes(args.key[..8].try_into().unwrap_or_default())
        ^ args
            .name
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b))
        ^ std::process::id() as u64;
    let config = Config {
        name: args.name.clone(),
        advertise: transport.local_addr(),
        keyring: Keyring::new(args.key.into()),
        timing: args.timing,
        meta: wesher_meta(&args.name)?,
    };
    let mut m = Membership::new(config, Instant::now(), seed);
    if let Some(addr) = args.join {
        m.join(Instant::now(), &[addr]);
    }
    println!("ready {}", transport.local_addr());
    let mut events = Events::with_capacity(64);
    let mut inputs = Vec::new();
    let mut alive = 0;
    loop {
        let now = Instant::now();
        if m.next_deadline().is_some_and(|d| d <= now) {
            m.handle_timeout(now);
        }
        while let Some(t) = m.poll_transmit() {
            transport.send(t);
        }
        transport.drain_pending(&mut inputs);
        while m.poll_event().is_some() {}
        if m.num_alive() != alive {
            alive = m.num_alive();
            println!("members {alive}");
        }
        if inputs.is_empty() {
            let timeout = m.next_deadline().map(|d| d.saturating_duration_since(now));
            match poll.poll(&mut events, timeout) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                    return Err(format!("poll: {e}"))
                }
                _ => {}
            }
            for event in events.iter() {
                if event.token() == SIGNALS {
                    if signals.pending().next().is_some() {
                        let s = m.stats();
                        println!(
                            "stats packets_out={} bytes_out={} packets_in={} bytes_in={} streams_out={} streams_in={}",
                            s.packets_out, s.bytes_out, s.packets_in, s.bytes_in, s.streams_out, s.streams_in
                        );
                        return Ok(());
                    }
                } else {
                    transport.handle_event(event, &mut inputs);
                }
            }
        }
        let now = Instant::now();
        for input in inputs.drain(..) {
            m.handle_input(now, input);
        }
    }
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gossip_node: {e}");
            ExitCode::FAILURE
        }
    }
}
