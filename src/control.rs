//! The control socket: `wesher status` and `wesher key ...` talk to a running agent.
//!
//! One request line per connection, one reply, then the agent closes. The server side is
//! non-blocking and driven by the agent's mio loop; the client side is a plain blocking call.
//! The socket is created 0600 in a 0700 directory, and the server also checks each client's uid:
//! only root and the agent's own user can ask.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::json::{self, Value};
use crate::membership::noise::{suppressed, Noise};
use crate::vecmap::VecMap;
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

/// Directory of the control sockets, one per interface.
pub const RUN_DIR: &str = "/var/run/wesher";
/// Longest request line accepted; requests are a few words and a key.
const MAX_REQUEST: usize = 512;
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNS: usize = 16;

/// The socket path for an interface.
pub fn socket_path(interface: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{interface}.sock"))
}

/// What a client may ask.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Status,
    KeyInstall(String),
    KeyUse(String),
    KeyRemove(String),
    /// A device without wesher: name, public key, overlay address set by hand.
    PeerAdd {
        name: String,
        public_key: String,
        overlay: Option<String>,
    },
    PeerList,
    PeerRemove(String),
}

impl Request {
    pub fn parse(line: &str) -> Result<Request, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["status"] => Ok(Request::Status),
            ["key", "install", k] => Ok(Request::KeyInstall(k.to_string())),
            ["key", "use", k] => Ok(Request::KeyUse(k.to_string())),
            ["key", "remove", k] => Ok(Request::KeyRemove(k.to_string())),
            ["peer", "add", name, key, overlay @ ..] if overlay.len() <= 1 => {
                Ok(Request::PeerAdd {
                    name: name.to_string(),
                    public_key: key.to_string(),
                    overlay: overlay.first().map(|s| s.to_string()),
                })
            }
            ["peer", "list"] => Ok(Request::PeerList),
            ["peer", "remove", name] => Ok(Request::PeerRemove(name.to_string())),
            _ => Err(format!("unknown request {line:?}")),
        }
    }

    fn line(&self) -> String {
        match self {
            Request::Status => "status".into(),
            Request::KeyInstall(k) => format!("key install {k}"),
            Request::KeyUse(k) => format!("key use {k}"),
            Request::KeyRemove(k) => format!("key remove {k}"),
            Request::PeerAdd {
                name,
                public_key,
                overlay,
            } => format!(
                "peer add {name} {public_key} {}",
                overlay.as_deref().unwrap_or_default()
            ),
            Request::PeerList => "peer list".into(),
            Request::PeerRemove(name) => format!("peer remove {name}"),
        }
    }
}

/// One member as `wesher status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberStatus {
    pub name: String,
    pub overlay: String,
    pub underlay: String,
    pub state: String,
    pub public_key: String,
    /// Seconds since the last WireGuard handshake; None before the first one.
    pub handshake_age_secs: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl MemberStatus {
    fn write(&self, out: &mut String) {
        let mut o = json::Object::new(out);
        o.str("name", &self.name)
            .str("overlay", &self.overlay)
            .str("underlay", &self.underlay)
            .str("state", &self.state)
            .str("public_key", &self.public_key)
            .opt_u64("handshake_age_secs", self.handshake_age_secs)
            .u64("rx_bytes", self.rx_bytes)
            .u64("tx_bytes", self.tx_bytes);
        o.end();
    }

    fn read(v: &Value) -> Option<MemberStatus> {
        Some(MemberStatus {
            name: text(v, "name")?,
            overlay: text(v, "overlay")?,
            underlay: text(v, "underlay")?,
            state: text(v, "state")?,
            public_key: text(v, "public_key")?,
            handshake_age_secs: match v.get("handshake_age_secs") {
                None | Some(Value::Null) => None,
                Some(n) => Some(n.as_u64()?),
            },
            rx_bytes: v.get("rx_bytes")?.as_u64()?,
            tx_bytes: v.get("tx_bytes")?.as_u64()?,
        })
    }
}

/// A string member of a JSON object.
pub(crate) fn text(v: &Value, name: &str) -> Option<String> {
    v.get(name)?.as_str().map(String::from)
}

/// Version of the `status --json` schema (README, "Status JSON"). Raised only when a field is
/// removed, renamed or changes meaning; new fields may appear at any time within a version.
pub const STATUS_VERSION: u32 = 1;

/// The whole status reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// `STATUS_VERSION` of the agent that answered.
    pub version: u32,
    pub interface: String,
    pub node: MemberStatus,
    pub members: Vec<MemberStatus>,
    /// For `--prometheus`.
    pub counters: crate::metrics::Counters,
}

impl Status {
    /// The reply to a status request (README, "Status JSON").
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        let mut o = json::Object::new(&mut out);
        o.u64("version", self.version.into())
            .str("interface", &self.interface);
        self.node.write(o.key("node"));
        json::array(o.key("members"), &self.members, |out, m| m.write(out));
        self.counters.write(o.key("counters"));
        o.end();
        out
    }

    /// Reads a reply; fields it does not know are ignored (newer agents may add some).
    pub fn from_json(reply: &str) -> Option<Status> {
        let v = json::parse(reply).ok()?;
        Some(Status {
            version: v.get("version")?.as_u64()?.try_into().ok()?,
            interface: text(&v, "interface")?,
            node: MemberStatus::read(v.get("node")?)?,
            members: (v.get("members")?.as_array()?.iter())
                .map(MemberStatus::read)
                .collect::<Option<_>>()?,
            counters: crate::metrics::Counters::read(v.get("counters")?)?,
        })
    }

    /// A table for people; scripts use `--json`.
    pub fn render(&self) -> String {
        let mut out = format!(
            "interface {}: node {} overlay {} underlay {}\n",
            printable(&self.interface),
            printable(&self.node.name),
            printable(&self.node.overlay),
            printable(&self.node.underlay)
        );
        out.push_str(&format!(
            "{:<20} {:<16} {:<22} {:<8} {:>10} {:>12} {:>12}\n",
            "NAME", "OVERLAY", "UNDERLAY", "STATE", "HANDSHAKE", "RX", "TX"
        ));
        for m in &self.members {
            let hs = m
                .handshake_age_secs
                .map_or_else(|| "never".to_string(), |s| format!("{s}s ago"));
            out.push_str(&format!(
                "{:<20} {:<16} {:<22} {:<8} {:>10} {:>12} {:>12}\n",
                printable(&m.name),
                printable(&m.overlay),
                printable(&m.underlay),
                printable(&m.state),
                hs,
                m.rx_bytes,
                m.tx_bytes
            ));
        }
        out
    }
}

/// `text` with control characters escaped (`\u{1b}`), so a name from the network cannot drive
/// the terminal or forge table lines.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Send one request to the agent of `interface` and return its reply.
pub fn ask(path: &Path, request: &Request) -> Result<String, String> {
    let mut stream = StdUnixStream::connect(path).map_err(|e| {
        format!(
            "connecting to {}: {e} (is the agent running, and are you root?)",
            path.display()
        )
    })?;
    let timeout = Some(Duration::from_secs(10));
    let io_err = |e: io::Error| format!("talking to {}: {e}", path.display());
    stream.set_read_timeout(timeout).map_err(io_err)?;
    let sent = stream.write_all(format!("{}\n", request.line()).as_bytes());
    let mut reply = Vec::new();
    let read = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    // The agent answers a refused client without reading its request, and closes: the write
    // or the read may then fail (broken pipe, reset), but the answer stands.
    if let Some(e) = reply.strip_prefix("error: ") {
        return Err(e.trim_end().to_string());
    }
    sent.map_err(io_err)?;
    read.map_err(io_err)?;
    Ok(reply)
}

/// Only root and the agent's own user may ask (the socket's mode says so too; this holds even
/// if the directory or the socket is made more open by hand).
fn uid_allowed(uid: libc::uid_t, own: libc::uid_t) -> bool {
    uid == 0 || uid == own
}

/// The client's uid, from the kernel (SO_PEERCRED), not from anything the client says.
fn peer_uid(stream: &UnixStream) -> io::Result<libc::uid_t> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

struct Conn {
    stream: UnixStream,
    request: Vec<u8>,
    reply: Option<Vec<u8>>,
}

/// The listening side, owned by the agent's loop. Tokens `first_token..first_token + MAX_CONNS`
/// are the connections, `first_token - 1` the listener.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    token: Token,
    conns: VecMap<Token, Conn>,
    /// Any local user can connect at will: refusals are logged at a bounded rate.
    refused: Noise,
}

impl Server {
    /// Number of tokens the server uses, starting at the one passed to `bind`.
    pub const TOKENS: usize = MAX_CONNS + 1;

    pub fn bind(path: &Path, registry: &Registry, token: Token) -> io::Result<Server> {
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        // A socket left by a killed agent is stale unless something still answers on it.
        if path.exists() && StdUnixStream::connect(path).is_err() {
            fs::remove_file(path)?;
        }
        // Created 0600 rather than chmod-ed after bind: no moment where others may connect.
        // SAFETY: umask only swaps the process's file creation mask.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        let mut listener = bound?;
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            token,
            conns: VecMap::new(),
            refused: Noise::default(),
        })
    }

    pub fn owns(&self, token: Token) -> bool {
        (self.token.0..self.token.0 + Self::TOKENS).contains(&token.0)
    }

    /// Handle readiness; returns requests that are complete, to be answered with `reply`.
    pub fn handle_event(
        &mut self,
        registry: &Registry,
        token: Token,
    ) -> Vec<(Token, Result<Request, String>)> {
        let mut requests = Vec::new();
        if token == self.token {
            self.accept(registry);
            return requests;
        }
        let Some(conn) = self.conns.get_mut(&token) else {
            return requests;
        };
        if conn.reply.is_some() {
            if flush(conn) {
                self.close(registry, token);
            }
            return requests;
        }
        let mut buf = [0u8; 256];
        loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    self.close(registry, token);
                    return requests;
                }
                Ok(n) => {
                    conn.request.extend_from_slice(&buf[..n]);
                    if let Some(end) = conn.request.iter().position(|&b| b == b'\n') {
                        let line = String::from_utf8_lossy(&conn.request[..end]).into_owned();
                        requests.push((token, Request::parse(&line)));
                        return requests;
                    }
                    if conn.request.len() > MAX_REQUEST {
                        requests.push((token, Err("request too long".into())));
                        return requests;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return requests,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("control connection: {e}");
                    self.close(registry, token);
                    return requests;
                }
            }
        }
    }

    /// Answer a request; the connection closes once the reply is written.
    pub fn reply(&mut self, registry: &Registry, token: Token, reply: Result<String, String>) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let text = match reply {
            Ok(t) => t,
            Err(e) => format!("error: {e}\n"),
        };
        conn.reply = Some(text.into_bytes());
        if flush(conn) {
            self.close(registry, token);
        } else if let Err(e) = registry.reregister(&mut conn.stream, token, Interest::WRITABLE) {
            debug!("control connection: {e}");
            self.close(registry, token);
        }
    }

    fn accept(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    // SAFETY: geteuid has no preconditions.
                    let own = unsafe { libc::geteuid() };
                    match peer_uid(&stream) {
                        Ok(uid) if uid_allowed(uid, own) => {}
                        Ok(uid) => {
                            if let Some(n) = self.refused.allow(Instant::now()) {
                                warn!(
                                    "control socket: refusing a client of uid {uid}{}",
                                    suppressed(n)
                                );
                            }
                            // Into the new socket's empty buffer, so one write is enough; the
                            // client shows it as its error.
                            let _ = stream.write(
                                format!(
                                    "error: refused: only root and uid {own} (the agent's) \
                                     may use the control socket\n"
                                )
                                .as_bytes(),
                            );
                            continue;
                        }
                        Err(e) => {
                            debug!("control socket: reading the client's credentials: {e}");
                            continue;
                        }
                    }
                    let Some(token) = (self.token.0 + 1..self.token.0 + Self::TOKENS)
                        .map(Token)
                        .find(|t| !self.conns.contains_key(t))
                    else {
                        debug!("control socket: too many connections, dropping one");
                        continue;
                    };
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        self.conns.insert(
                            token,
                            Conn {
                                stream,
                                request: Vec::new(),
                                reply: None,
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("control socket accept: {e}");
                    return;
                }
            }
        }
    }

    fn close(&mut self, registry: &Registry, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = registry.deregister(&mut conn.stream);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Write what the socket takes; true when the whole reply is out (or the peer is gone).
fn flush(conn: &mut Conn) -> bool {
    let Some(reply) = conn.reply.as_mut() else {
        return false;
    };
    while !reply.is_empty() {
        match conn.stream.write(reply) {
            Ok(0) => return true,
            Ok(n) => {
                reply.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    #[test]
    fn requests_parse_and_round_trip() {
        for r in [
            Request::Status,
            Request::KeyInstall("abc=".into()),
            Request::KeyUse("abc=".into()),
            Request::KeyRemove("abc=".into()),
            Request::PeerAdd {
                name: "phone".into(),
                public_key: "abc=".into(),
                overlay: None,
            },
            Request::PeerAdd {
                name: "phone".into(),
                public_key: "abc=".into(),
                overlay: Some("10.1.2.3".into()),
            },
            Request::PeerList,
            Request::PeerRemove("phone".into()),
        ] {
            assert_eq!(Request::parse(&r.line()), Ok(r));
        }
        assert!(Request::parse("key frob x").is_err());
        assert!(Request::parse("").is_err());
    }

    #[test]
    fn only_root_and_our_own_user_may_ask() {
        assert!(uid_allowed(0, 0));
        assert!(uid_allowed(0, 1000));
        assert!(uid_allowed(1000, 1000));
        assert!(!uid_allowed(1001, 1000));
        assert!(!uid_allowed(65534, 0));
        let (a, _b) = StdUnixStream::pair().unwrap();
        let a = UnixStream::from_std(a);
        // SAFETY: geteuid has no preconditions.
        assert_eq!(peer_uid(&a).unwrap(), unsafe { libc::geteuid() });
    }

    #[test]
    fn status_json_round_trips_and_renders() {
        let m = MemberStatus {
            name: "node2".into(),
            overlay: "10.59.76.237".into(),
            underlay: "192.0.2.2:7946".into(),
            state: "alive".into(),
            public_key: "k".into(),
            handshake_age_secs: Some(3),
            rx_bytes: 10,
            tx_bytes: 20,
        };
        let evil = MemberStatus {
            name: "evil\n\u{1b}[2Jnode9".into(),
            ..m.clone()
        };
        let s = Status {
            version: STATUS_VERSION,
            interface: "wgoverlay".into(),
            node: m.clone(),
            members: vec![m, evil],
            counters: Default::default(),
        };
        let json = s.to_json();
        assert!(json.starts_with(r#"{"version":1,"#), "{json}");
        assert_eq!(Status::from_json(&json).unwrap(), s);
        // What a newer agent might add is ignored; what is missing or mistyped is refused.
        let newer = json.replacen('{', r#"{"later":[1,{"x":null}],"#, 1);
        assert_eq!(Status::from_json(&newer).unwrap(), s);
        for broken in [
            json.replacen(r#""version":1"#, r#""version":"1""#, 1),
            json.replacen(r#""rx_bytes":10"#, r#""rx_bytes":-10"#, 1),
            json.replacen(
                r#""handshake_age_secs":3"#,
                r#""handshake_age_secs":"3""#,
                1,
            ),
            json.replacen(r#""interface""#, r#""iface""#, 1),
            json[..json.len() - 1].to_string(),
        ] {
            assert_eq!(Status::from_json(&broken), None, "{broken}");
        }
        let table = s.render();
        assert!(
            table.contains("node2") && table.contains("3s ago"),
            "{table}"
        );
        assert!(table.contains("evil\\n\\u{1b}[2Jnode9"), "{table}");
        assert_eq!(table.lines().count(), 4, "one line per member: {table}");
        assert!(!table.contains('\u{1b}'));
    }

    /// A real socket: the server answers a blocking client from a poll loop on another thread.
    #[test]
    fn server_answers_a_client_over_a_real_socket() {
        let dir = std::env::temp_dir().join(format!("wesher-control-{}", std::process::id()));
        let path = dir.join("wgtest.sock");
        let mut poll = Poll::new().unwrap();
        let mut server = Server::bind(&path, poll.registry(), Token(10)).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let client_path = path.clone();
        let client = std::thread::spawn(move || {
            (
                ask(&client_path, &Request::Status),
                ask(&client_path, &Request::KeyUse("x".into())),
            )
        });
        let mut events = Events::with_capacity(8);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut answered = 0;
        while answered < 2 && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for ev in events.iter() {
                assert!(server.owns(ev.token()));
                for (token, req) in server.handle_event(poll.registry(), ev.token()) {
                    let reply = match req {
                        Ok(Request::Status) => Ok("all good\n".to_string()),
                        Ok(other) => Err(format!("refused {other:?}")),
                        Err(e) => Err(e),
                    };
                    server.reply(poll.registry(), token, reply);
                    answered += 1;
                }
            }
        }
        let (status, key) = client.join().unwrap();
        assert_eq!(status, Ok("all good\n".to_string()));
        assert_eq!(key, Err("refused KeyUse(\"x\")".to_string()));
        drop(server);
        assert!(!path.exists(), "socket removed on drop");
        let _ = fs::remove_dir(&dir);
    }
}
