//! The cross-platform userspace API (wireguard.com/xplatform) spoken by wireguard-go and
//! boringtun over `/var/run/wireguard/<iface>.sock`: `key=value` lines ending with a
//! blank line, keys in hex, replies ending with `errno=N`. One request per connection.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::{DeviceConfig, DeviceStatus, Error, Key, PeerChange, PeerStatus, PrivateKey};
use zeroize::Zeroizing;

const SOCKET_DIR: &str = "/var/run/wireguard";
/// A daemon that takes longer than this is stuck; the agent's loop must not hang on it (a
/// request that times out is retried by the next reconcile).
const TIMEOUT: Duration = Duration::from_secs(1);
/// Bounds a reply (a `get` lists every peer): far above any real mesh.
const MAX_REPLY: u64 = 16 << 20;

/// A userspace WireGuard daemon's control socket.
pub struct Userspace {
    path: PathBuf,
    ifname: String,
}

impl Userspace {
    /// `Ok(None)` when the interface has no socket; an error when it has one that does
    /// not answer (a daemon killed without cleaning up).
    pub fn open(ifname: &str) -> Result<Option<Userspace>, Error> {
        let path = PathBuf::from(format!("{SOCKET_DIR}/{ifname}.sock"));
        if !path.exists() {
            return Ok(None);
        }
        let userspace = Userspace {
            path,
            ifname: ifname.to_string(),
        };
        userspace.device()?;
        Ok(Some(userspace))
    }

    pub fn set_device(&self, config: &DeviceConfig) -> Result<(), Error> {
        let what = format!("configuring WireGuard device {}", self.ifname);
        self.exchange(&what, &set_device_request(config)).map(drop)
    }

    pub fn apply(&self, changes: &[PeerChange]) -> Result<(), Error> {
        let what = format!("changing peers of WireGuard device {}", self.ifname);
        self.exchange(&what, &apply_request(changes)).map(drop)
    }

    pub fn device(&self) -> Result<DeviceStatus, Error> {
        let what = format!("reading WireGuard device {}", self.ifname);
        let reply = self.exchange(&what, "get=1\n\n")?;
        parse_get(&reply).map_err(|e| Error::new(what, e))
    }

    /// Sends one request and returns the reply's lines before `errno=0`. A `get` reply holds
    /// the private key, so it is read without a `BufReader` (whose buffer is freed without being
    /// zeroized) into buffers zeroized when dropped.
    fn exchange(&self, what: &str, request: &str) -> Result<Zeroizing<String>, Error> {
        let io_err = |e: std::io::Error| Error::new(what, format!("{}: {e}", self.path.display()));
        let mut stream = UnixStream::connect(&self.path).map_err(io_err)?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
        stream.write_all(request.as_bytes()).map_err(io_err)?;
        // The daemon keeps the connection open for more requests: read up to the
        // errno line that ends the reply rather than to EOF.
        let mut stream = (&stream).take(MAX_REPLY);
        let mut reply = Zeroizing::new(Vec::with_capacity(4096));
        // Where the first line not yet looked at starts.
        let mut line_start = 0;
        loop {
            if reply.len() == reply.capacity() {
                // Copied into a new buffer rather than reallocated: the old one is zeroized.
                let mut bigger = Zeroizing::new(Vec::with_capacity(2 * reply.capacity()));
                bigger.extend_from_slice(&reply);
                reply = bigger;
            }
            let filled = reply.len();
            let capacity = reply.capacity();
            reply.resize(capacity, 0);
            let read = match stream.read(&mut reply[filled..]) {
                Ok(0) => return Err(Error::new(what, "the daemon closed the socket mid-reply")),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(e) => return Err(io_err(e)),
            };
            reply.truncate(filled + read);
            while let Some(len) = reply[line_start..].iter().position(|&b| b == b'\n') {
                let line = &reply[line_start..line_start + len];
                if let Some(code) = line.strip_prefix(b"errno=") {
                    let code = std::str::from_utf8(code)
                        .ok()
                        .and_then(|c| c.parse::<i32>().ok());
                    let code = code.ok_or_else(|| {
                        let line = String::from_utf8_lossy(line);
                        Error::new(what, format!("bad reply line {line:?}"))
                    })?;
                    // wireguard-go answers negative numbers, boringtun positive ones.
                    if code != 0 {
                        return Err(Error::errno(what, code.saturating_abs()));
                    }
                    reply.truncate(line_start);
                    return String::from_utf8(std::mem::take(&mut *reply))
                        .map(Zeroizing::new)
                        .map_err(|e| {
                            drop(Zeroizing::new(e.into_bytes()));
                            Error::new(what, "the reply is not text")
                        });
                }
                line_start += len + 1;
            }
        }
    }
}

/// Holds the private key: built in one allocation (no reallocation leaves a copy behind) and
/// zeroized when dropped.
fn set_device_request(config: &DeviceConfig) -> Zeroizing<String> {
    let hex = config.private_key.to_hex();
    let port = config.listen_port.to_string();
    let mut req = Zeroizing::new(String::with_capacity(64 + hex.len() + port.len()));
    for part in ["set=1\nprivate_key=", &hex, "\nlisten_port=", &port, "\n\n"] {
        req.push_str(part);
    }
    req
}

fn apply_request(changes: &[PeerChange]) -> String {
    let mut out = String::from("set=1\n");
    for change in changes {
        match change {
            PeerChange::Remove(key) => {
                out += &format!("public_key={}\nremove=true\n", key.to_hex())
            }
            PeerChange::Upsert(peer) => {
                out += &format!("public_key={}\n", peer.public_key.to_hex());
                if let Some(endpoint) = peer.endpoint {
                    out += &format!("endpoint={endpoint}\n");
                }
                out += &format!(
                    "persistent_keepalive_interval={}\nreplace_allowed_ips=true\n",
                    peer.persistent_keepalive.unwrap_or(0)
                );
                for (ip, len) in &peer.allowed_ips {
                    out += &format!("allowed_ip={ip}/{len}\n");
                }
            }
        }
    }
    out.push('\n');
    out
}

fn parse_get(reply: &str) -> Result<DeviceStatus, String> {
    let mut device = DeviceStatus {
        public_key: None,
        listen_port: 0,
        peers: Vec::new(),
    };
    let mut handshake = (0u64, 0u32);
    for line in reply.lines().filter(|l| !l.is_empty()) {
        let bad = || format!("bad reply line {line:?}");
        let (key, value) = line.split_once('=').ok_or_else(bad)?;
        let number = || value.parse::<u64>().map_err(|_| bad());
        if key == "public_key" {
            finish_handshake(&mut device, handshake);
            handshake = (0, 0);
            let public_key = Key::from_hex(value).map_err(|e| e.to_string())?;
            device.peers.push(PeerStatus {
                public_key,
                endpoint: None,
                allowed_ips: Vec::new(),
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
                persistent_keepalive: None,
            });
            continue;
        }
        let Some(peer) = device.peers.last_mut() else {
            match key {
                "private_key" => {
                    let private = PrivateKey::from_hex(value).map_err(|e| e.to_string())?;
                    device.public_key =
                        (private.as_bytes() != &[0; 32]).then(|| private.public_key());
                }
                "listen_port" => {
                    device.listen_port = u16::try_from(number()?).map_err(|_| bad())?
                }
                _ => {} // fwmark and whatever later versions add
            }
            continue;
        };
        match key {
            "endpoint" => peer.endpoint = parse_endpoint(value),
            "allowed_ip" => peer.allowed_ips.push(parse_prefix(value).ok_or_else(bad)?),
            "rx_bytes" => peer.rx_bytes = number()?,
            "tx_bytes" => peer.tx_bytes = number()?,
            "persistent_keepalive_interval" => {
                let secs = u16::try_from(number()?).map_err(|_| bad())?;
                peer.persistent_keepalive = (secs != 0).then_some(secs);
            }
            "last_handshake_time_sec" => handshake.0 = number()?,
            "last_handshake_time_nsec" => {
                handshake.1 = u32::try_from(number()?).map_err(|_| bad())?
            }
            _ => {} // preshared_key, protocol_version, ...
        }
    }
    finish_handshake(&mut device, handshake);
    Ok(device)
}

fn finish_handshake(device: &mut DeviceStatus, (secs, nanos): (u64, u32)) {
    if let Some(peer) = device.peers.last_mut() {
        if secs != 0 || nanos != 0 {
            peer.last_handshake =
                SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos.min(999_999_999)));
        }
    }
}

/// `ip:port` or `[ip6%scope]:port`; the scope is dropped.
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    match text.split_once('%') {
        Some((head, tail)) => {
            let port = tail.split_once(']')?.1;
            format!("{head}]{port}").parse().ok()
        }
        None => text.parse().ok(),
    }
}

fn parse_prefix(text: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = text.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

#[cfg(test)]
mod tests {
    use super::super::PeerConfig;
    use super::*;

    fn key(byte: u8) -> Key {
        Key([byte; 32])
    }

    #[test]
    fn set_device_request_has_hex_key_and_port() {
        let req = set_device_request(&DeviceConfig {
            private_key: &PrivateKey::from([0xab; 32]),
            listen_port: 51820,
        });
        assert_eq!(
            *req,
            format!(
                "set=1\nprivate_key={}\nlisten_port=51820\n\n",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn apply_request_upserts_and_removes_without_replacing_peers() {
        let req = apply_request(&[
            PeerChange::Upsert(PeerConfig {
                public_key: key(1),
                endpoint: Some("[2001:db8::1]:51820".parse().unwrap()),
                allowed_ips: vec![
                    ("10.1.2.3".parse().unwrap(), 32),
                    ("fd00::".parse().unwrap(), 64),
                ],
                persistent_keepalive: Some(25),
            }),
            PeerChange::Upsert(PeerConfig {
                public_key: key(2),
                endpoint: None,
                allowed_ips: vec![],
                persistent_keepalive: None,
            }),
            PeerChange::Remove(key(3)),
        ]);
        let expected = format!(
            "set=1\npublic_key={}\nendpoint=[2001:db8::1]:51820\npersistent_keepalive_interval=25\n\
             replace_allowed_ips=true\nallowed_ip=10.1.2.3/32\nallowed_ip=fd00::/64\n\
             public_key={}\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\n\
             public_key={}\nremove=true\n\n",
            "01".repeat(32),
            "02".repeat(32),
            "03".repeat(32)
        );
        assert_eq!(req, expected);
        assert!(!req.contains("replace_peers"));
    }

    #[test]
    fn get_reply_parses_device_and_peers() {
        let private = PrivateKey::from([0x40; 32]);
        let reply = format!(
            "private_key={}\nlisten_port=51821\nfwmark=0\n\
             public_key={}\npreshared_key={}\nprotocol_version=1\nendpoint=192.0.2.1:51820\n\
             last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=92\n\
             rx_bytes=180\npersistent_keepalive_interval=0\nallowed_ip=10.0.0.2/32\n\
             allowed_ip=10.9.0.0/16\n\
             public_key={}\nendpoint=[fe80::1%2]:7\nlast_handshake_time_sec=0\n\
             last_handshake_time_nsec=0\npersistent_keepalive_interval=30\n",
            *private.to_hex(),
            key(1).to_hex(),
            "00".repeat(32),
            key(2).to_hex()
        );
        let dev = parse_get(&reply).unwrap();
        assert_eq!(dev.public_key, Some(private.public_key()));
        assert_eq!(dev.listen_port, 51821);
        assert_eq!(dev.peers.len(), 2);
        let p = &dev.peers[0];
        assert_eq!(p.public_key, key(1));
        assert_eq!(p.endpoint, Some("192.0.2.1:51820".parse().unwrap()));
        assert_eq!(
            p.last_handshake,
            Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5))
        );
        assert_eq!((p.rx_bytes, p.tx_bytes), (180, 92));
        assert_eq!(p.persistent_keepalive, None);
        assert_eq!(
            p.allowed_ips,
            vec![
                ("10.0.0.2".parse().unwrap(), 32),
                ("10.9.0.0".parse().unwrap(), 16)
            ]
        );
        let q = &dev.peers[1];
        assert_eq!(q.endpoint, Some("[fe80::1]:7".parse().unwrap()));
        assert_eq!(q.last_handshake, None);
        assert_eq!(q.persistent_keepalive, Some(30));
    }

    /// A daemon on a real socket answering one request with `reply` in small writes.
    fn exchange_with(reply: String) -> Result<Zeroizing<String>, Error> {
        let dir = crate::fsutil::testutil::TempDir::new("uapi-exchange");
        let path = dir.path().join("wg0.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let daemon = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 7];
            conn.read_exact(&mut request).unwrap();
            assert_eq!(&request, b"get=1\n\n");
            for chunk in reply.as_bytes().chunks(1000) {
                conn.write_all(chunk).unwrap();
            }
        });
        let userspace = Userspace {
            path,
            ifname: "wg0".into(),
        };
        let reply = userspace.exchange("reading", "get=1\n\n");
        daemon.join().unwrap();
        reply
    }

    #[test]
    fn exchange_reads_long_replies_up_to_the_errno_line() {
        // Longer than the first buffer, so it is read across a growth.
        let lines: String = (0..500)
            .map(|i| format!("allowed_ip=10.0.{}.{}/32\n", i / 250, i % 250))
            .collect();
        assert!(lines.len() > 4096);
        let reply = exchange_with(format!("{lines}errno=0\n\n")).unwrap();
        assert_eq!(*reply, lines);
        let e = exchange_with("listen_port=1\nerrno=-2\n\n".into()).unwrap_err();
        assert_eq!(e.raw_errno(), Some(2));
        let e = exchange_with("errno=x\n\n".into()).unwrap_err();
        assert!(e.to_string().contains("bad reply line \"errno=x\""), "{e}");
        let e = exchange_with("listen_port=1\n".into()).unwrap_err();
        assert!(e.to_string().contains("closed the socket mid-reply"), "{e}");
    }

    #[test]
    fn get_reply_rejects_garbage() {
        assert!(parse_get("listen_port=99999\n").is_err());
        assert!(parse_get("nonsense\n").is_err());
        assert!(parse_get(&format!(
            "public_key={}\nallowed_ip=10.0.0.1/33\n",
            key(1).to_hex()
        ))
        .is_err());
    }
}
