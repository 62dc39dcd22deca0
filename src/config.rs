//! Command line and `WESHER_*` environment -> a validated `Config`.
//!
//! Go wesher's flags and variables, with its defaults; a flag beats its variable, which beats the
//! default. An empty variable counts as unset (as in a systemd EnvironmentFile `WESHER_JOIN=`).
//! Values may be given as `--flag value` or `--flag=value`; booleans as `--flag` or
//! `--flag=true|false|1|0|yes|no`. Every error names the flag or variable it came from; the
//! cluster key itself is never echoed.

use crate::overlay::Cidr;
use crate::secret::SecretKey;
use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// A configuration error; Display is the whole message (main prints `wesher: error: <message>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `wesher` or `wesher agent`: run the daemon.
    Agent(Box<Config>),
    /// `--help`: print `help_text()` and exit 0.
    Help,
    /// `--version`: print the version and exit 0.
    Version,
    /// `wesher status [--json|--prometheus]`: ask the running agent of an interface for the mesh.
    Status {
        interface: String,
        json: bool,
        prometheus: bool,
    },
    /// `wesher key generate`: print a new random cluster key; needs no agent.
    KeyGenerate,
    /// `wesher peer add|list|remove`: devices without wesher on the running agent.
    Peer {
        interface: String,
        action: PeerAction,
    },
    /// `wesher key install|use|remove [KEY]`: change the running agent's cluster keyring. No
    /// KEY: it is read from standard input (so that it stays out of argv, which `ps` shows).
    Key {
        interface: String,
        action: KeyAction,
        key: Option<String>,
    },
}

/// What `wesher peer` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAction {
    /// A new device; its key pair is generated here unless a public key is given.
    Add {
        name: String,
        public_key: Option<String>,
        overlay: Option<String>,
        qr: bool,
    },
    List,
    Remove(String),
}

/// What `wesher key` does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    /// Accept the key for decryption (and keep encrypting with the current one).
    Install,
    /// Encrypt with the key from now on; it must be installed.
    Use,
    /// Stop accepting the key; it must not be the one in use.
    Remove,
}

/// How to pick the gossip bind address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// Neither --bind-addr nor --bind-iface: autodetect (SPEC section 1).
    Auto,
    Addr(IpAddr),
    /// The first address of this interface.
    Iface(String),
}

/// memberlist timing profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipProfile {
    /// DefaultWANConfig, what Go wesher uses.
    Wan,
    Lan,
}

/// A --join entry: a hostname or IP with an optional port (the cluster port when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAddr {
    /// Hostname or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: Option<u16>,
}

impl JoinAddr {
    pub fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }
}

impl fmt::Display for JoinAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = self.host.contains(':');
        match (self.port, bracket) {
            (Some(p), true) => write!(f, "[{}]:{p}", self.host),
            (Some(p), false) => write!(f, "{}:{p}", self.host),
            (None, _) => f.write_str(&self.host),
        }
    }
}

fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

impl FromStr for JoinAddr {
    type Err = String;

    /// `host`, `host:port`, `1.2.3.4`, `1.2.3.4:port`, `fd00::1` (bare IPv6, which Go rejects),
    /// `[fd00::1]` and `[fd00::1]:port`.
    fn from_str(s: &str) -> Result<JoinAddr, String> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| "missing ']' after the IPv6 address".to_string())?;
            if inside.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{inside:?} is not an IPv6 address"));
            }
            match after {
                "" => (inside, None),
                _ => match after.strip_prefix(':') {
                    Some(p) => (inside, Some(p)),
                    None => return Err("unexpected text after ']'".into()),
                },
            }
        } else if s.parse::<IpAddr>().is_ok() {
            (s, None)
        } else {
            match s.split_once(':') {
                Some((h, p)) if !p.contains(':') => (h, Some(p)),
                Some(_) => {
                    return Err(
                        "not an address: IPv6 with a port must be written [addr]:port".into(),
                    )
                }
                None => (s, None),
            }
        };
        if host.parse::<IpAddr>().is_err() && !is_hostname(host) {
            return Err(format!("{host:?} is not a valid hostname or IP address"));
        }
        let port = port.map(parse_port).transpose()?;
        Ok(JoinAddr {
            host: host.to_string(),
            port,
        })
    }
}

/// Everything the agent is configured with.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub cluster_key: Option<SecretKey>,
    /// Where the key was read from with --cluster-key-file, for messages.
    pub cluster_key_file: Option<PathBuf>,
    pub join: Vec<JoinAddr>,
    pub init: bool,
    pub bind: Bind,
    pub cluster_port: u16,
    pub wireguard_port: u16,
    pub overlay_net: Cidr,
    pub interface: String,
    pub no_etc_hosts: bool,
    /// The hosts file to write members to (unless `no_etc_hosts`).
    pub hosts_file: PathBuf,
    pub log_level: log::LevelFilter,
    pub state_dir: PathBuf,
    /// None: use the hostname (the agent reads it and checks it with `validate_node_name`).
    pub node_name: Option<String>,
    pub mtu: u32,
    /// Seconds; 0 = off.
    pub persistent_keepalive: u16,
    pub advertise_addr: Option<IpAddr>,
    pub advertise_port: Option<u16>,
    pub gossip_profile: GossipProfile,
    /// Networks behind this node that the others route through it (site-to-site).
    pub routed_nets: Vec<Cidr>,
    /// Other nodes' routed networks installed even where they overlap our own routing.
    pub accept_routed_nets: Vec<Cidr>,
    /// This node's overlay address set by hand instead of derived from its name.
    pub overlay_addr: Option<IpAddr>,
    /// A program run after each applied change of the mesh (`hooks`).
    pub on_change: Option<PathBuf>,
    /// Messages about the configuration to log once logging is set up (parsing comes first).
    pub warnings: Vec<String>,
}

// Hand-written so the cluster key never reaches a log line.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field(
                "cluster_key",
                &self.cluster_key.as_ref().map(|_| "<redacted>"),
            )
            .field("cluster_key_file", &self.cluster_key_file)
            .field("join", &self.join)
            .field("init", &self.init)
            .field("bind", &self.bind)
            .field("cluster_port", &self.cluster_port)
            .field("wireguard_port", &self.wireguard_port)
            .field("overlay_net", &self.overlay_net)
            .field("interface", &self.interface)
            .field("no_etc_hosts", &self.no_etc_hosts)
            .field("hosts_file", &self.hosts_file)
            .field("log_level", &self.log_level)
            .field("state_dir", &self.state_dir)
            .field("node_name", &self.node_name)
            .field("mtu", &self.mtu)
            .field("persistent_keepalive", &self.persistent_keepalive)
            .field("advertise_addr", &self.advertise_addr)
            .field("advertise_port", &self.advertise_port)
            .field("gossip_profile", &self.gossip_profile)
            .field("routed_nets", &self.routed_nets)
            .field("accept_routed_nets", &self.accept_routed_nets)
            .field("overlay_addr", &self.overlay_addr)
            .field("on_change", &self.on_change)
            .field("warnings", &self.warnings)
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Value,
    /// Repeatable; each occurrence may hold a comma-separated list.
    List,
}

/// One option: the table drives parsing, env lookup, defaults and --help alike.
struct Opt {
    long: &'static str,
    env: &'static str,
    kind: Kind,
    meta: &'static str,
    default: Option<&'static str>,
    /// What --help shows as the default when it is not a literal value.
    shown_default: &'static str,
    help: &'static str,
}

const OPTS: &[Opt] = &[
    Opt {
        long: "cluster-key",
        env: "WESHER_CLUSTER_KEY",
        kind: Kind::Value,
        meta: "KEY",
        default: None,
        shown_default: "loaded from the state file, or generated",
        help: "shared key for cluster membership: 32 bytes, standard base64",
    },
    Opt {
        long: "cluster-key-file",
        env: "WESHER_CLUSTER_KEY_FILE",
        kind: Kind::Value,
        meta: "PATH",
        default: None,
        shown_default: "none",
        help: "read the cluster key from this file (mode 0600), not from argv or the environment",
    },
    Opt {
        long: "join",
        env: "WESHER_JOIN",
        kind: Kind::List,
        meta: "HOST,...",
        default: None,
        shown_default: "the nodes in the state file",
        help: "comma separated hostnames or IPs (optional :port) of cluster members; repeatable",
    },
    Opt {
        long: "init",
        env: "WESHER_INIT",
        kind: Kind::Bool,
        meta: "",
        default: Some("false"),
        shown_default: "",
        help: "start a new cluster: forget the stored nodes and cluster key",
    },
    Opt {
        long: "bind-addr",
        env: "WESHER_BIND_ADDR",
        kind: Kind::Value,
        meta: "ADDR",
        default: None,
        shown_default: "autodetected",
        help: "IP address for cluster traffic (not with --bind-iface)",
    },
    Opt {
        long: "bind-iface",
        env: "WESHER_BIND_IFACE",
        kind: Kind::Value,
        meta: "IFACE",
        default: None,
        shown_default: "none",
        help: "bind cluster traffic to this interface's first address (not with --bind-addr)",
    },
    Opt {
        long: "cluster-port",
        env: "WESHER_CLUSTER_PORT",
        kind: Kind::Value,
        meta: "PORT",
        default: Some("7946"),
        shown_default: "",
        help: "gossip port, TCP and UDP; the same on every node",
    },
    Opt {
        long: "wireguard-port",
        env: "WESHER_WIREGUARD_PORT",
        kind: Kind::Value,
        meta: "PORT",
        default: Some("51820"),
        shown_default: "",
        help: "WireGuard UDP port; the same on every node",
    },
    Opt {
        long: "overlay-net",
        env: "WESHER_OVERLAY_NET",
        kind: Kind::Value,
        meta: "CIDR",
        default: Some("10.0.0.0/8"),
        shown_default: "",
        help: "network for overlay addresses, IPv4 or IPv6; prefix length a multiple of 8",
    },
    Opt {
        long: "interface",
        env: "WESHER_INTERFACE",
        kind: Kind::Value,
        meta: "DEV",
        default: Some("wgoverlay"),
        shown_default: "",
        help: "WireGuard interface to manage; also names the state file and hosts lines",
    },
    Opt {
        long: "no-etc-hosts",
        env: "WESHER_NO_ETC_HOSTS",
        kind: Kind::Bool,
        meta: "",
        default: Some("false"),
        shown_default: "",
        help: "do not write peers to the hosts file",
    },
    Opt {
        long: "hosts-file",
        env: "WESHER_HOSTS_FILE",
        kind: Kind::Value,
        meta: "PATH",
        default: Some(crate::hosts::DEFAULT_PATH),
        shown_default: "",
        help: "hosts file for the peers' names; it must exist (e.g. /tmp/hosts/wesher for dnsmasq)",
    },
    Opt {
        long: "log-level",
        env: "WESHER_LOG_LEVEL",
        kind: Kind::Value,
        meta: "LEVEL",
        default: Some("warn"),
        shown_default: "",
        help: "trace, debug, info, warn (warning) or error",
    },
    Opt {
        long: "state-dir",
        env: "WESHER_STATE_DIR",
        kind: Kind::Value,
        meta: "DIR",
        default: Some(crate::state::DEFAULT_STATE_DIR),
        shown_default: "",
        help: "directory of the state file (e.g. /etc/wesher on OpenWrt, where /var is wiped)",
    },
    Opt {
        long: "node-name",
        env: "WESHER_NODE_NAME",
        kind: Kind::Value,
        meta: "NAME",
        default: None,
        shown_default: "the hostname",
        help: "this node's name in the cluster; must be unique",
    },
    Opt {
        long: "mtu",
        env: "WESHER_MTU",
        kind: Kind::Value,
        meta: "N",
        default: Some("1420"),
        shown_default: "",
        help: "MTU of the WireGuard interface: 576..9000 (1280..9000 for an IPv6 overlay)",
    },
    Opt {
        long: "persistent-keepalive",
        env: "WESHER_PERSISTENT_KEEPALIVE",
        kind: Kind::Value,
        meta: "SECONDS",
        default: Some("0"),
        shown_default: "",
        help: "WireGuard keepalive to every peer, for nodes behind NAT; 0 = off",
    },
    Opt {
        long: "advertise-addr",
        env: "WESHER_ADVERTISE_ADDR",
        kind: Kind::Value,
        meta: "IP",
        default: None,
        shown_default: "the bind address",
        help: "address other nodes should use to reach this one (e.g. behind NAT)",
    },
    Opt {
        long: "advertise-port",
        env: "WESHER_ADVERTISE_PORT",
        kind: Kind::Value,
        meta: "PORT",
        default: None,
        shown_default: "the cluster port",
        help: "cluster port other nodes should use to reach this one",
    },
    Opt {
        long: "gossip-profile",
        env: "WESHER_GOSSIP_PROFILE",
        kind: Kind::Value,
        meta: "wan|lan",
        default: Some("wan"),
        shown_default: "",
        help: "memberlist timings: wan (Go wesher's) or lan (faster failure detection)",
    },
    Opt {
        long: "routed-net",
        env: "WESHER_ROUTED_NET",
        kind: Kind::List,
        meta: "CIDR,...",
        default: None,
        shown_default: "none",
        help: "networks behind this node (e.g. its LAN) that the other nodes route through it",
    },
    Opt {
        long: "accept-routed-nets",
        env: "WESHER_ACCEPT_ROUTED_NETS",
        kind: Kind::List,
        meta: "CIDR,...",
        default: None,
        shown_default: "none",
        help: "routed networks of other nodes to install even where they overlap this node's \
               connected networks, the default route or a member's underlay address",
    },
    Opt {
        long: "overlay-addr",
        env: "WESHER_OVERLAY_ADDR",
        kind: Kind::Value,
        meta: "IP",
        default: None,
        shown_default: "derived from the node name",
        help: "this node's overlay address, inside --overlay-net (never moved on a collision)",
    },
    Opt {
        long: "on-change",
        env: "WESHER_ON_CHANGE",
        kind: Kind::Value,
        meta: "PROGRAM",
        default: None,
        shown_default: "none",
        help: "program run after each applied change of the mesh: the change in WESHER_EVENT, \
               WESHER_MEMBER..., the mesh as JSON on stdin (see the README)",
    },
];

/// The --help text: every option with its variable and default.
pub fn help_text() -> String {
    let mut out = String::from(
        "wesher: WireGuard mesh overlay manager (drop-in replacement for Go wesher)\n\n\
         Usage: wesher [agent] [OPTIONS]\n\
         \x20      wesher status [--json|--prometheus] [--interface DEV]\n\
         \x20      wesher key generate\n\
         \x20      wesher peer add NAME [--public-key KEY] [--overlay-addr IP] [--qr] [--interface DEV]\n\
         \x20      wesher peer list | peer remove NAME [--interface DEV]\n\
         \x20      wesher key install|use|remove [KEY] [--interface DEV]\n\n\
         Commands:\n\
         \x20 agent                          run the mesh agent (the default)\n\
         \x20 status                         show the running agent's members, addresses and handshakes\n\
         \x20 key generate                   print a new random cluster key (standard base64, 32 bytes)\n\
         \x20 key install|use|remove [KEY]   rotate the running agent's cluster key without downtime:\n\
         \x20                                install the new key on every node, then use it everywhere,\n\
         \x20                                then remove the old one; without KEY, the key is read\n\
         \x20                                from standard input (it stays out of `ps`)\n\
         \x20 peer add|list|remove           devices without wesher (phones, laptops) routed through\n\
         \x20                                this node; `add` prints their wg-quick configuration\n\n\
         Options (each can also be set by its environment variable; a flag beats the variable):\n",
    );
    for o in OPTS {
        let flag = if o.meta.is_empty() {
            format!("--{}", o.long)
        } else {
            format!("--{} {}", o.long, o.meta)
        };
        let default = o.default.filter(|_| o.shown_default.is_empty());
        let default = default.unwrap_or(o.shown_default);
        out.push_str(&format!(
            "  {flag:<30} {}\n  {:<30} [env: {}] [default: {default}]\n",
            o.help, "", o.env
        ));
    }
    out.push_str(&format!(
        "  {:<30} print the version and exit\n  {:<30} print this help and exit\n",
        "--version", "-h, --help"
    ));
    out
}

/// Where a value came from, for messages.
#[derive(Clone, Copy)]
enum Source {
    Flag(&'static str),
    Env(&'static str),
    Default(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(l) => write!(f, "--{l}"),
            Source::Env(e) => write!(f, "{e}"),
            Source::Default(l) => write!(f, "default of --{l}"),
        }
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {s:?} is not a number"));
    }
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(format!("port {s} is out of range 1..65535")),
    }
}

/// true/false/1/0/yes/no, any case (plus Go strconv.ParseBool's t/f).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "t" => Ok(true),
        "false" | "0" | "no" | "f" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true/false, 1/0, yes/no)")),
    }
}

fn parse_log_level(s: &str) -> Result<log::LevelFilter, String> {
    use log::LevelFilter as L;
    match s.to_ascii_lowercase().as_str() {
        "trace" => Ok(L::Trace),
        "debug" => Ok(L::Debug),
        "info" => Ok(L::Info),
        "warn" | "warning" => Ok(L::Warn),
        // logrus also knows fatal and panic; both only log errors.
        "error" | "fatal" | "panic" => Ok(L::Error),
        _ => Err(format!(
            "{s:?} is not a log level (trace, debug, info, warn, error)"
        )),
    }
}

/// Linux interface name rules (`dev_valid_name`): 1..15 bytes, not `.`/`..`, no `/`, `:` or
/// whitespace. The name also becomes a file name, so this keeps state paths safe.
pub fn validate_interface(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("interface name is empty".into());
    }
    if name.len() > 15 {
        return Err(format!(
            "interface name {name:?} is {} bytes, longer than the 15 Linux allows",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "interface name {name:?} contains '/', ':', whitespace or a control character"
        ));
    }
    Ok(())
}

/// A node name must be usable as a hosts file name and a memberlist name.
pub fn validate_node_name(name: &str) -> Result<(), String> {
    if crate::hosts::is_writable_name(name) {
        Ok(())
    } else {
        Err(format!(
            "node name {name:?} must be 1..253 printable ASCII characters without whitespace or '#'"
        ))
    }
}

fn validate_overlay(net: &Cidr) -> Result<(), String> {
    if !net.prefix_len().is_multiple_of(8) {
        return Err(format!(
            "prefix length /{} must be a multiple of 8 (Go wesher's rule: addresses are derived \
             by whole bytes, and every node must derive them the same way)",
            net.prefix_len()
        ));
    }
    if net.host_bits() == 0 {
        return Err(format!(
            "/{} leaves no room for node addresses",
            net.prefix_len()
        ));
    }
    Ok(())
}

/// Raw values collected from the command line, per option index.
struct Raw {
    values: Vec<Vec<String>>,
}

fn utf8(v: OsString, flag: &str) -> Result<String, ConfigError> {
    v.into_string()
        .map_err(|_| ConfigError(format!("--{flag}: value is not valid UTF-8")))
}

/// Parses `args` (without the program name) and the environment as seen through `env`.
pub fn parse_from<I, S, E>(args: I, env: E) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
    E: Fn(&str) -> Option<String>,
{
    use lexopt::Arg;
    let mut parser = lexopt::Parser::from_args(args);
    let mut raw = Raw {
        values: vec![Vec::new(); OPTS.len()],
    };
    let mut seen_command = false;
    loop {
        let arg = parser
            .next()
            .map_err(|e| ConfigError(format!("{e} (see --help)")))?;
        let Some(arg) = arg else { break };
        match arg {
            Arg::Long("help") | Arg::Short('h') => return Ok(Command::Help),
            Arg::Long("version") => return Ok(Command::Version),
            Arg::Long(name) => {
                let Some(i) = OPTS.iter().position(|o| o.long == name) else {
                    return Err(ConfigError(format!("unknown flag --{name} (see --help)")));
                };
                let opt = &OPTS[i];
                let value = if opt.kind == Kind::Bool {
                    match parser.optional_value() {
                        Some(v) => utf8(v, opt.long)?,
                        None => "true".into(),
                    }
                } else if let Some(v) = parser.optional_value() {
                    utf8(v, opt.long)?
                } else {
                    let v = parser
                        .value()
                        .map_err(|_| ConfigError(format!("missing value for --{}", opt.long)))?;
                    let v = utf8(v, opt.long)?;
                    // `--join --init`: a value that is itself a flag means the value is missing.
                    if v.starts_with("--") {
                        return Err(ConfigError(format!("missing value for --{}", opt.long)));
                    }
                    v
                };
                if opt.kind == Kind::List {
                    raw.values[i].push(value);
                } else {
                    // As with Go's kong, the last occurrence wins.
                    raw.values[i] = vec![value];
                }
            }
            Arg::Short(c) => {
                return Err(ConfigError(format!("unknown flag -{c} (see --help)")));
            }
            Arg::Value(v) => {
                let v = v.to_string_lossy().into_owned();
                let first = !seen_command && raw.values.iter().all(Vec::is_empty);
                match v.as_str() {
                    "agent" if first => seen_command = true,
                    "status" | "key" | "peer" if first => {
                        return parse_client(&v, &mut parser, &env)
                    }
                    _ => {
                        return Err(ConfigError(format!(
                            "unexpected argument {v:?} (commands: agent, status, key, peer; see --help)"
                        )))
                    }
                }
            }
        }
    }
    resolve(&raw, &env).map(|c| Command::Agent(Box::new(c)))
}

/// `status [--json] [--interface DEV]`, `key generate` and
/// `key install|use|remove [KEY] [--interface DEV]`.
fn parse_client(
    command: &str,
    parser: &mut lexopt::Parser,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, ConfigError> {
    use lexopt::Arg;
    let mut interface = env("WESHER_INTERFACE")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "wgoverlay".into());
    let mut json = false;
    let mut prometheus = false;
    let (mut public_key, mut overlay, mut qr) = (None, None, false);
    let mut words = Vec::new();
    while let Some(arg) = parser
        .next()
        .map_err(|e| ConfigError(format!("{e} (see --help)")))?
    {
        match arg {
            Arg::Long("json") if command == "status" => json = true,
            Arg::Long("prometheus") if command == "status" => prometheus = true,
            Arg::Long("qr") if command == "peer" => qr = true,
            Arg::Long("public-key") if command == "peer" => {
                public_key = Some(peer_value(parser, "public-key")?);
            }
            Arg::Long("overlay-addr") if command == "peer" => {
                overlay = Some(peer_value(parser, "overlay-addr")?);
            }
            Arg::Long("interface") => {
                let v = parser
                    .value()
                    .map_err(|_| ConfigError("missing value for --interface".into()))?;
                interface = utf8(v, "interface")?;
            }
            Arg::Value(v) => words.push(utf8(v, command)?),
            Arg::Long(name) => {
                return Err(ConfigError(format!(
                    "unknown flag --{name} for `wesher {command}` (see --help)"
                )))
            }
            Arg::Short(c) => {
                return Err(ConfigError(format!(
                    "unknown flag -{c} for `wesher {command}` (see --help)"
                )))
            }
        }
    }
    validate_interface(&interface).map_err(|e| ConfigError(format!("--interface: {e}")))?;
    if command == "status" {
        if let Some(w) = words.first() {
            return Err(ConfigError(format!(
                "unexpected argument {w:?} to `wesher status`"
            )));
        }
        if json && prometheus {
            return Err(ConfigError(
                "`wesher status`: --json and --prometheus exclude each other".into(),
            ));
        }
        return Ok(Command::Status {
            interface,
            json,
            prometheus,
        });
    }
    if command == "peer" {
        let action =
            match words.as_slice() {
                [a, name] if a == "add" => PeerAction::Add {
                    name: name.clone(),
                    public_key: public_key.take(),
                    overlay: overlay.take(),
                    qr,
                },
                [a] if a == "list" => PeerAction::List,
                [a, name] if a == "remove" => PeerAction::Remove(name.clone()),
                _ => return Err(ConfigError(
                    "usage: wesher peer add NAME [--public-key KEY] [--overlay-addr IP] [--qr] \
                     | peer list | peer remove NAME [--interface DEV]"
                        .into(),
                )),
            };
        if public_key.is_some()
            || overlay.is_some()
            || (qr && !matches!(action, PeerAction::Add { .. }))
        {
            return Err(ConfigError(
                "--public-key, --overlay-addr and --qr are for `wesher peer add`".into(),
            ));
        }
        if let PeerAction::Add { name, .. } | PeerAction::Remove(name) = &action {
            validate_node_name(name).map_err(|e| ConfigError(format!("device {e}")))?;
        }
        return Ok(Command::Peer { interface, action });
    }
    let usage = || {
        ConfigError(
            "usage: wesher key generate | wesher key install|use|remove [KEY] [--interface DEV] \
             (no KEY: read from standard input)"
                .into(),
        )
    };
    if words.first().is_some_and(|w| w == "generate") {
        return if words.len() == 1 {
            Ok(Command::KeyGenerate)
        } else {
            Err(usage())
        };
    }
    let (action, key) = match words.as_slice() {
        [action] => (action, None),
        [action, key] => (action, Some(key)),
        _ => return Err(usage()),
    };
    let action = match action.as_str() {
        "install" => KeyAction::Install,
        "use" => KeyAction::Use,
        "remove" => KeyAction::Remove,
        other => {
            return Err(ConfigError(format!(
                "unknown key action {other:?} (install, use or remove)"
            )))
        }
    };
    if let Some(key) = key {
        SecretKey::from_base64(key).map_err(|e| ConfigError(format!("key: {e}")))?;
    }
    Ok(Command::Key {
        interface,
        action,
        key: key.cloned(),
    })
}

fn peer_value(parser: &mut lexopt::Parser, flag: &str) -> Result<String, ConfigError> {
    let v = parser
        .value()
        .map_err(|_| ConfigError(format!("missing value for --{flag}")))?;
    utf8(v, flag)
}

/// Parses the process's own arguments and environment.
pub fn parse_process() -> Result<Command, ConfigError> {
    parse_from(std::env::args_os().skip(1), |name| {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    })
}

/// The effective values of option `long`: flag values, else the non-empty variable, else the
/// default; with their source.
fn effective<'a>(
    raw: &'a Raw,
    env: &dyn Fn(&str) -> Option<String>,
    long: &str,
) -> Option<(Source, Vec<String>)> {
    let i = OPTS.iter().position(|o| o.long == long)?;
    let opt = &OPTS[i];
    if !raw.values[i].is_empty() {
        return Some((Source::Flag(opt.long), raw.values[i].clone()));
    }
    if let Some(v) = env(opt.env).filter(|v| !v.is_empty()) {
        return Some((Source::Env(opt.env), vec![v]));
    }
    opt.default
        .map(|d| (Source::Default(opt.long), vec![d.to_string()]))
}

/// A comma-separated list of networks (flag given several times, or one variable), each checked
/// by `check`; errors name the source and the entry.
fn cidr_list(
    raw: &Raw,
    env: &dyn Fn(&str) -> Option<String>,
    long: &str,
    check: impl Fn(&Cidr) -> Result<(), String>,
) -> Result<Vec<Cidr>, ConfigError> {
    let mut nets = Vec::new();
    if let Some((src, values)) = effective(raw, env, long) {
        for v in &values {
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let net = item
                    .parse::<Cidr>()
                    .map_err(|e| ConfigError(format!("{src} {item:?}: {e}")))?;
                check(&net).map_err(|e| ConfigError(format!("{src} {item:?}: {e}")))?;
                nets.push(net);
            }
        }
    }
    Ok(nets)
}

fn resolve(raw: &Raw, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    // The single value of an option, validated by `parse`; the error names the source.
    // Instantiated once per option type: the lookup and the message stay out of line.
    fn one<T>(
        raw: &Raw,
        env: &dyn Fn(&str) -> Option<String>,
        long: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let Some((src, v)) = last_value(raw, env, long) else {
            return Ok(None);
        };
        parse(&v).map(Some).map_err(|e| source_error(&src, &e))
    }
    #[inline(never)]
    fn last_value(
        raw: &Raw,
        env: &dyn Fn(&str) -> Option<String>,
        long: &str,
    ) -> Option<(Source, String)> {
        let (src, mut values) = effective(raw, env, long)?;
        Some((src, values.pop().unwrap_or_default()))
    }
    #[inline(never)]
    fn source_error(src: &Source, e: &str) -> ConfigError {
        ConfigError(format!("{src}: {e}"))
    }
    fn required<T>(v: Option<T>, long: &str) -> Result<T, ConfigError> {
        v.ok_or_else(|| ConfigError(format!("--{long} has no value")))
    }
    let ip = |s: &str| {
        s.parse::<IpAddr>()
            .map_err(|_| format!("{s:?} is not an IP address"))
    };

    let mut warnings = Vec::new();
    let cluster_key = one(raw, env, "cluster-key", |s| {
        SecretKey::from_base64(s.trim())
    })?;
    let cluster_key_file = one(raw, env, "cluster-key-file", |s| Ok(PathBuf::from(s)))?;
    let cluster_key = match (cluster_key, &cluster_key_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError(
                "--cluster-key and --cluster-key-file cannot be used together (set one; check \
                 WESHER_CLUSTER_KEY and WESHER_CLUSTER_KEY_FILE too)"
                    .into(),
            ))
        }
        (None, Some(path)) => {
            let (key, warning) = read_key_file(path)
                .map_err(|e| ConfigError(format!("--cluster-key-file {}: {e}", path.display())))?;
            warnings.extend(warning);
            Some(key)
        }
        (key, None) => key,
    };

    let mut join = Vec::new();
    if let Some((src, values)) = effective(raw, env, "join") {
        for v in &values {
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                join.push(
                    item.parse::<JoinAddr>()
                        .map_err(|e| ConfigError(format!("{src} {item:?}: {e}")))?,
                );
            }
        }
    }

    let init = required(one(raw, env, "init", parse_bool)?, "init")?;
    let bind_addr = one(raw, env, "bind-addr", ip)?;
    let bind_iface = one(raw, env, "bind-iface", |s| {
        validate_interface(s).map(|()| s.to_string())
    })?;
    let bind = match (bind_addr, bind_iface) {
        (Some(_), Some(_)) => {
            return Err(ConfigError(
                "--bind-addr and --bind-iface cannot be used together (set one; check \
                 WESHER_BIND_ADDR and WESHER_BIND_IFACE too)"
                    .into(),
            ))
        }
        (Some(a), None) => Bind::Addr(a),
        (None, Some(i)) => Bind::Iface(i),
        (None, None) => Bind::Auto,
    };
    let cluster_port = required(one(raw, env, "cluster-port", parse_port)?, "cluster-port")?;
    let wireguard_port = required(
        one(raw, env, "wireguard-port", parse_port)?,
        "wireguard-port",
    )?;
    let overlay_net = required(
        one(raw, env, "overlay-net", |s| {
            let net = s.parse::<Cidr>().map_err(|e| e.to_string())?;
            validate_overlay(&net).map(|()| net)
        })?,
        "overlay-net",
    )?;
    let interface = required(
        one(raw, env, "interface", |s| {
            validate_interface(s).map(|()| s.to_string())
        })?,
        "interface",
    )?;
    let no_etc_hosts = required(one(raw, env, "no-etc-hosts", parse_bool)?, "no-etc-hosts")?;
    let hosts_file = required(
        one(raw, env, "hosts-file", |s| Ok(PathBuf::from(s)))?,
        "hosts-file",
    )?;
    let log_level = required(one(raw, env, "log-level", parse_log_level)?, "log-level")?;
    let state_dir = required(
        one(raw, env, "state-dir", |s| Ok(PathBuf::from(s)))?,
        "state-dir",
    )?;
    let node_name = one(raw, env, "node-name", |s| {
        validate_node_name(s).map(|()| s.to_string())
    })?;
    let min_mtu = if overlay_net.is_ipv4() { 576 } else { 1280 };
    let mtu = required(
        one(raw, env, "mtu", |s| match s.parse::<u32>() {
            Ok(m) if (min_mtu..=9000).contains(&m) => Ok(m),
            Ok(m) => Err(format!(
                "MTU {m} is out of range {min_mtu}..9000 for an {} overlay",
                if overlay_net.is_ipv4() {
                    "IPv4"
                } else {
                    "IPv6"
                }
            )),
            Err(_) => Err(format!("MTU {s:?} is not a number")),
        })?,
        "mtu",
    )?;
    let persistent_keepalive = required(
        one(raw, env, "persistent-keepalive", |s| {
            s.parse::<u16>()
                .map_err(|_| format!("{s:?} is not a number of seconds in 0..65535"))
        })?,
        "persistent-keepalive",
    )?;
    let advertise_addr = one(raw, env, "advertise-addr", |s| {
        let a = ip(s)?;
        if a.is_unspecified() || a.is_multicast() {
            return Err(format!("{a} cannot be advertised"));
        }
        Ok(a)
    })?;
    let advertise_port = one(raw, env, "advertise-port", parse_port)?;
    let gossip_profile = required(
        one(raw, env, "gossip-profile", |s| {
            match s.to_ascii_lowercase().as_str() {
                "wan" => Ok(GossipProfile::Wan),
                "lan" => Ok(GossipProfile::Lan),
                _ => Err(format!("{s:?} is not a gossip profile (wan or lan)")),
            }
        })?,
        "gossip-profile",
    )?;

    let routed_nets = cidr_list(raw, env, "routed-net", |net| {
        if net.network() != net.addr() {
            return Err(format!(
                "host bits are set (did you mean {}/{}?)",
                net.network(),
                net.prefix_len()
            ));
        }
        if net.overlaps(&overlay_net) {
            return Err(format!("overlaps the overlay network {overlay_net}"));
        }
        Ok(())
    })?;
    let accept_routed_nets = cidr_list(raw, env, "accept-routed-nets", |_| Ok(()))?;
    let overlay_addr = one(raw, env, "overlay-addr", |s| {
        let a = ip(s)?;
        if !overlay_net.contains(a) {
            return Err(format!(
                "{a} is not inside the overlay network {overlay_net}"
            ));
        }
        if crate::overlay::is_reserved(&overlay_net, a) {
            return Err(format!(
                "{a} is the network or broadcast address of {overlay_net}"
            ));
        }
        Ok(a)
    })?;

    let on_change = one(raw, env, "on-change", |s| Ok(PathBuf::from(s)))?;

    Ok(Config {
        cluster_key,
        cluster_key_file,
        join,
        init,
        bind,
        cluster_port,
        wireguard_port,
        overlay_net,
        interface,
        no_etc_hosts,
        hosts_file,
        log_level,
        state_dir,
        node_name,
        mtu,
        persistent_keepalive,
        advertise_addr,
        advertise_port,
        gossip_profile,
        routed_nets,
        accept_routed_nets,
        overlay_addr,
        on_change,
        warnings,
    })
}

/// The key in a --cluster-key-file: base64 with surrounding whitespace (a trailing newline),
/// and a warning when others than the owner may read the file. The key is never echoed.
fn read_key_file(path: &std::path::Path) -> Result<(SecretKey, Option<String>), String> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    // A key is 44 characters: do not read a large file by mistake. The buffer is never full,
    // so never reallocated (which would leave a copy of the key behind).
    let mut text = zeroize::Zeroizing::new(Vec::with_capacity(1025));
    file.take(1024)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    let text = std::str::from_utf8(&text).map_err(|_| "not a base64 key (not text)".to_string())?;
    let key = SecretKey::from_base64(text.trim())?;
    let mode = meta.mode() & 0o777;
    let warning = (mode & 0o077 != 0).then(|| {
        format!(
            "cluster key file {} is readable by others than its owner (mode {mode:04o}): \
             chmod 600 it",
            path.display()
        )
    });
    Ok((key, warning))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "i5ETFXldQsVnuSTIB1RljwEp+rTPf7bZrpgc7yYt0Hc=";

    fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<Command, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_from(args.iter().copied(), move |k| env.get(k).cloned())
    }

    fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse_env(args, env) {
            Ok(Command::Agent(c)) => *c,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    fn error(args: &[&str], env: &[(&str, &str)]) -> String {
        match parse_env(args, env) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("expected an error, got {c:?}"),
        }
    }

    #[test]
    fn defaults_match_go() {
        let c = config(&[], &[]);
        assert_eq!(c.cluster_key, None);
        assert!(c.join.is_empty());
        assert!(!c.init);
        assert_eq!(c.bind, Bind::Auto);
        assert_eq!(c.cluster_port, 7946);
        assert_eq!(c.wireguard_port, 51820);
        assert_eq!(c.overlay_net.to_string(), "10.0.0.0/8");
        assert_eq!(c.interface, "wgoverlay");
        assert!(!c.no_etc_hosts);
        assert_eq!(c.log_level, log::LevelFilter::Warn);
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/wesher"));
        assert_eq!(c.node_name, None);
        assert_eq!(c.mtu, 1420);
        assert_eq!(c.persistent_keepalive, 0);
        assert_eq!(c.advertise_addr, None);
        assert_eq!(c.advertise_port, None);
        assert_eq!(c.gossip_profile, GossipProfile::Wan);
        // `wesher agent` is the same.
        assert_eq!(config(&["agent"], &[]), c);
    }

    #[test]
    fn every_flag_is_read() {
        let c = config(
            &[
                "agent",
                "--cluster-key",
                KEY,
                "--join",
                "a.example,10.0.0.1:7000",
                "--join=[fd00::1]:8000",
                "--init",
                "--bind-addr",
                "192.168.1.2",
                "--cluster-port=7000",
                "--wireguard-port",
                "51000",
                "--overlay-net",
                "fd00:1::/64",
                "--interface",
                "wg-mesh",
                "--no-etc-hosts",
                "--log-level",
                "DEBUG",
                "--state-dir",
                "/etc/wesher",
                "--node-name",
                "router1",
                "--mtu",
                "1380",
                "--persistent-keepalive",
                "25",
                "--advertise-addr",
                "203.0.113.7",
                "--advertise-port",
                "17946",
                "--gossip-profile",
                "LAN",
            ],
            &[],
        );
        assert_eq!(c.cluster_key, Some(SecretKey::from_base64(KEY).unwrap()));
        assert_eq!(
            c.join.iter().map(|j| j.to_string()).collect::<Vec<_>>(),
            ["a.example", "10.0.0.1:7000", "[fd00::1]:8000"]
        );
        assert!(c.init);
        assert_eq!(c.bind, Bind::Addr("192.168.1.2".parse().unwrap()));
        assert_eq!(c.cluster_port, 7000);
        assert_eq!(c.wireguard_port, 51000);
        assert_eq!(c.overlay_net.to_string(), "fd00:1::/64");
        assert_eq!(c.interface, "wg-mesh");
        assert!(c.no_etc_hosts);
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert_eq!(c.state_dir, PathBuf::from("/etc/wesher"));
        assert_eq!(c.node_name.as_deref(), Some("router1"));
        assert_eq!(c.mtu, 1380);
        assert_eq!(c.persistent_keepalive, 25);
        assert_eq!(c.advertise_addr, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(c.advertise_port, Some(17946));
        assert_eq!(c.gossip_profile, GossipProfile::Lan);
    }

    #[test]
    fn every_env_var_is_read() {
        let c = config(
            &[],
            &[
                ("WESHER_CLUSTER_KEY", KEY),
                ("WESHER_JOIN", "a, b:1 ,,"),
                ("WESHER_INIT", "YES"),
                ("WESHER_BIND_IFACE", "eth0"),
                ("WESHER_CLUSTER_PORT", "1"),
                ("WESHER_WIREGUARD_PORT", "65535"),
                ("WESHER_OVERLAY_NET", "172.16.0.0/16"),
                ("WESHER_INTERFACE", "wg0"),
                ("WESHER_NO_ETC_HOSTS", "1"),
                ("WESHER_LOG_LEVEL", "warning"),
                ("WESHER_STATE_DIR", "/tmp/x"),
                ("WESHER_NODE_NAME", "n1"),
                ("WESHER_MTU", "576"),
                ("WESHER_PERSISTENT_KEEPALIVE", "65535"),
                ("WESHER_ADVERTISE_ADDR", "fd00::9"),
                ("WESHER_ADVERTISE_PORT", "65535"),
                ("WESHER_GOSSIP_PROFILE", "wan"),
            ],
        );
        assert!(c.cluster_key.is_some());
        assert_eq!(
            c.join,
            vec![
                JoinAddr {
                    host: "a".into(),
                    port: None
                },
                JoinAddr {
                    host: "b".into(),
                    port: Some(1)
                }
            ]
        );
        assert!(c.init);
        assert_eq!(c.bind, Bind::Iface("eth0".into()));
        assert_eq!((c.cluster_port, c.wireguard_port), (1, 65535));
        assert_eq!(c.overlay_net.to_string(), "172.16.0.0/16");
        assert_eq!(c.interface, "wg0");
        assert!(c.no_etc_hosts);
        assert_eq!(c.log_level, log::LevelFilter::Warn);
        assert_eq!(c.state_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.node_name.as_deref(), Some("n1"));
        assert_eq!(c.mtu, 576);
        assert_eq!(c.persistent_keepalive, 65535);
        assert_eq!(c.advertise_addr, Some("fd00::9".parse().unwrap()));
        assert_eq!(c.advertise_port, Some(65535));
        assert_eq!(c.gossip_profile, GossipProfile::Wan);
    }

    #[test]
    fn flag_beats_env_beats_default() {
        let env = [
            ("WESHER_CLUSTER_PORT", "8000"),
            ("WESHER_JOIN", "from-env"),
            ("WESHER_INIT", "true"),
        ];
        let c = config(&["--cluster-port", "9000", "--join", "from-flag"], &env);
        assert_eq!(c.cluster_port, 9000);
        assert_eq!(c.join[0].host, "from-flag");
        assert!(c.init);
        let c = config(&["--init=false"], &env);
        assert!(!c.init, "a flag set to false beats the variable");
        assert_eq!(c.cluster_port, 8000);
        assert_eq!(c.join[0].host, "from-env");
        // An empty variable counts as unset.
        assert_eq!(
            config(&[], &[("WESHER_CLUSTER_PORT", "")]).cluster_port,
            7946
        );
        // The last occurrence of a single-valued flag wins.
        assert_eq!(config(&["--mtu", "1300", "--mtu=1400"], &[]).mtu, 1400);
    }

    #[test]
    fn booleans() {
        for (v, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("yes", true),
            ("Yes", true),
            ("false", false),
            ("0", false),
            ("no", false),
            ("NO", false),
        ] {
            assert_eq!(
                config(&[], &[("WESHER_NO_ETC_HOSTS", v)]).no_etc_hosts,
                want,
                "{v}"
            );
            let flag = format!("--no-etc-hosts={v}");
            assert_eq!(config(&[&flag], &[]).no_etc_hosts, want, "{v}");
        }
        let e = error(&[], &[("WESHER_INIT", "maybe")]);
        assert_eq!(
            e,
            "WESHER_INIT: \"maybe\" is not a boolean (true/false, 1/0, yes/no)"
        );
        let e = error(&["--init=perhaps"], &[]);
        assert!(e.starts_with("--init: "), "{e}");
    }

    #[test]
    fn log_levels() {
        use log::LevelFilter as L;
        for (v, want) in [
            ("debug", L::Debug),
            ("Info", L::Info),
            ("WARN", L::Warn),
            ("warning", L::Warn),
            ("error", L::Error),
            ("trace", L::Trace),
        ] {
            assert_eq!(config(&["--log-level", v], &[]).log_level, want);
        }
        let e = error(&["--log-level", "loud"], &[]);
        assert!(
            e.starts_with("--log-level: \"loud\" is not a log level"),
            "{e}"
        );
    }

    #[test]
    fn cluster_key_errors_do_not_echo_the_key() {
        let e = error(&["--cluster-key", "c2hvcnQ="], &[]);
        assert_eq!(e, "--cluster-key: decodes to 5 bytes, expected 32");
        let e = error(&[], &[("WESHER_CLUSTER_KEY", "sec%ret")]);
        assert!(e.starts_with("WESHER_CLUSTER_KEY: not valid base64"), "{e}");
        assert!(!e.contains("sec%ret"), "{e}");
        // Debug output redacts it too.
        let c = config(&["--cluster-key", KEY], &[]);
        let dbg = format!("{c:?}");
        assert!(dbg.contains("<redacted>") && !dbg.contains(KEY), "{dbg}");
    }

    #[test]
    fn port_errors() {
        for (v, want) in [
            ("0", "--cluster-port: port 0 is out of range 1..65535"),
            (
                "65536",
                "--cluster-port: port 65536 is out of range 1..65535",
            ),
            (
                "99999999999",
                "--cluster-port: port 99999999999 is out of range 1..65535",
            ),
            ("abc", "--cluster-port: port \"abc\" is not a number"),
            ("-1", "--cluster-port: port \"-1\" is not a number"),
            ("+5", "--cluster-port: port \"+5\" is not a number"),
        ] {
            assert_eq!(error(&[&format!("--cluster-port={v}")], &[]), want);
        }
        let e = error(&[], &[("WESHER_WIREGUARD_PORT", "0")]);
        assert_eq!(e, "WESHER_WIREGUARD_PORT: port 0 is out of range 1..65535");
        let e = error(&["--advertise-port", "70000"], &[]);
        assert!(e.starts_with("--advertise-port: "), "{e}");
    }

    #[test]
    fn interface_name_errors() {
        for (v, part) in [
            ("", "empty"),
            ("abcdefghijklmnop", "16 bytes, longer than the 15"),
            ("wg/0", "contains '/'"),
            ("wg 0", "whitespace"),
            ("wg:0", "':'"),
            ("..", "not a valid interface name"),
        ] {
            let e = error(&[&format!("--interface={v}")], &[]);
            assert!(
                e.starts_with("--interface: ") && e.contains(part),
                "{v:?}: {e}"
            );
        }
        assert_eq!(
            config(&["--interface", "abcdefghijklmno"], &[])
                .interface
                .len(),
            15
        );
        let e = error(&["--bind-iface", "a/b"], &[]);
        assert!(e.starts_with("--bind-iface: "), "{e}");
    }

    #[test]
    fn overlay_errors() {
        let e = error(&["--overlay-net", "10.0.0.0/12"], &[]);
        assert!(
            e.starts_with(
                "--overlay-net: prefix length /12 must be a multiple of 8 (Go wesher's rule"
            ),
            "{e}"
        );
        let e = error(&[], &[("WESHER_OVERLAY_NET", "10.0.0.0")]);
        assert!(e.starts_with("WESHER_OVERLAY_NET: "), "{e}");
        let e = error(&["--overlay-net", "10.0.0.0/32"], &[]);
        assert!(e.contains("no room"), "{e}");
        let e = error(&["--overlay-net", "banana/8"], &[]);
        assert!(e.contains("not an IP address"), "{e}");
        assert_eq!(
            config(&["--overlay-net", "10.1.2.3/16"], &[])
                .overlay_net
                .to_string(),
            "10.1.2.3/16"
        );
    }

    #[test]
    fn mtu_limits_depend_on_the_overlay_family() {
        assert_eq!(config(&["--mtu", "9000"], &[]).mtu, 9000);
        let e = error(&["--mtu", "575"], &[]);
        assert_eq!(
            e,
            "--mtu: MTU 575 is out of range 576..9000 for an IPv4 overlay"
        );
        let e = error(&["--mtu", "9001"], &[]);
        assert!(e.contains("out of range"), "{e}");
        let e = error(&["--mtu", "1000", "--overlay-net", "fd00::/64"], &[]);
        assert_eq!(
            e,
            "--mtu: MTU 1000 is out of range 1280..9000 for an IPv6 overlay"
        );
        assert_eq!(
            config(&["--mtu", "1280", "--overlay-net", "fd00::/64"], &[]).mtu,
            1280
        );
        assert!(error(&["--mtu", "big"], &[]).contains("not a number"));
    }

    #[test]
    fn keepalive_advertise_profile_node_name() {
        let e = error(&["--persistent-keepalive", "65536"], &[]);
        assert!(e.starts_with("--persistent-keepalive: "), "{e}");
        let e = error(&["--advertise-addr", "0.0.0.0"], &[]);
        assert!(e.contains("cannot be advertised"), "{e}");
        let e = error(&["--advertise-addr", "host"], &[]);
        assert!(e.contains("not an IP address"), "{e}");
        let e = error(&["--gossip-profile", "fast"], &[]);
        assert!(e.contains("wan or lan"), "{e}");
        let e = error(&["--node-name", "has space"], &[]);
        assert!(e.starts_with("--node-name: "), "{e}");
        assert!(validate_node_name("ok-name.example").is_ok());
        assert!(validate_node_name("bad#name").is_err());
    }

    #[test]
    fn join_forms() {
        let parse = |s: &str| s.parse::<JoinAddr>();
        let j = parse("fd00::1").unwrap();
        assert_eq!((j.host.as_str(), j.port), ("fd00::1", None));
        assert_eq!(j.port_or(7946), 7946);
        let j = parse("[fd00::1]:9").unwrap();
        assert_eq!((j.host.as_str(), j.port), ("fd00::1", Some(9)));
        assert_eq!(j.to_string(), "[fd00::1]:9");
        let j = parse("[fd00::1]").unwrap();
        assert_eq!(j.to_string(), "fd00::1");
        let j = parse("node.example:7946").unwrap();
        assert_eq!((j.host.as_str(), j.port), ("node.example", Some(7946)));
        assert_eq!(parse("1.2.3.4").unwrap().port, None);
        for bad in [
            "[fd00::1",
            "[nothex]:1",
            "[fd00::1]x",
            "fd00::1:notaport:",
            "host:0",
            "host:",
            ":7946",
            "bad host",
            "a/b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = error(&["--join", "ok,host:99999"], &[]);
        assert_eq!(
            e,
            "--join \"host:99999\": port 99999 is out of range 1..65535"
        );
        let e = error(&[], &[("WESHER_JOIN", "bad host")]);
        assert!(e.starts_with("WESHER_JOIN \"bad host\": "), "{e}");
    }

    #[test]
    fn command_line_errors() {
        assert_eq!(
            error(&["--bogus"], &[]),
            "unknown flag --bogus (see --help)"
        );
        assert_eq!(error(&["-x"], &[]), "unknown flag -x (see --help)");
        assert_eq!(error(&["--join"], &[]), "missing value for --join");
        assert_eq!(
            error(&["--join", "--init"], &[]),
            "missing value for --join"
        );
        assert!(error(&["agent", "agent"], &[]).contains("unexpected argument \"agent\""));
        assert!(error(&["frob"], &[]).contains("commands: agent, status, key"));
        assert!(error(&["agent", "status"], &[]).contains("unexpected argument \"status\""));
        let e = error(&["--bind-addr", "1.2.3.4", "--bind-iface", "eth0"], &[]);
        assert!(e.contains("cannot be used together"), "{e}");
        let e = error(
            &["--bind-addr", "1.2.3.4"],
            &[("WESHER_BIND_IFACE", "eth0")],
        );
        assert!(e.contains("cannot be used together"), "{e}");
        let e = error(&["--bind-addr", "eth0"], &[]);
        assert_eq!(e, "--bind-addr: \"eth0\" is not an IP address");
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_env(&["--help"], &[]), Ok(Command::Help));
        assert_eq!(parse_env(&["agent", "-h"], &[]), Ok(Command::Help));
        assert_eq!(parse_env(&["--version"], &[]), Ok(Command::Version));
        // Like Go's kong, --version acts at once, before later arguments are checked.
        assert_eq!(
            parse_env(&["--version", "--bogus"], &[]),
            Ok(Command::Version)
        );
        let help = help_text();
        for o in OPTS {
            assert!(help.contains(&format!("--{}", o.long)), "{}", o.long);
            assert!(help.contains(&format!("[env: {}]", o.env)), "{}", o.env);
        }
        for d in [
            "[default: 7946]",
            "[default: 51820]",
            "[default: 10.0.0.0/8]",
            "[default: wgoverlay]",
            "[default: warn]",
            "[default: /var/lib/wesher]",
            "[default: 1420]",
            "[default: wan]",
            "[default: the hostname]",
        ] {
            assert!(help.contains(d), "{d}");
        }
        assert!(help.contains("--version") && help.contains("--help"));
    }

    #[test]
    fn client_commands() {
        let c = parse_env(&["status", "--json", "--interface", "wg1"], &[]).unwrap();
        assert_eq!(
            c,
            Command::Status {
                interface: "wg1".into(),
                json: true,
                prometheus: false
            }
        );
        let c = parse_env(&["status", "--prometheus"], &[]).unwrap();
        assert!(matches!(
            c,
            Command::Status {
                prometheus: true,
                json: false,
                ..
            }
        ));
        assert!(error(&["status", "--prometheus", "--json"], &[]).contains("exclude"));
        let c = parse_env(&["status"], &[("WESHER_INTERFACE", "wg2")]).unwrap();
        assert_eq!(
            c,
            Command::Status {
                interface: "wg2".into(),
                json: false,
                prometheus: false
            }
        );
        let c = parse_env(&["key", "use", KEY], &[]).unwrap();
        assert_eq!(
            c,
            Command::Key {
                interface: "wgoverlay".into(),
                action: KeyAction::Use,
                key: Some(KEY.into())
            }
        );
        assert_eq!(
            parse_env(&["key", "generate"], &[]),
            Ok(Command::KeyGenerate)
        );
        assert!(error(&["key", "generate", KEY], &[]).contains("usage: wesher key"));
        let c = parse_env(
            &["peer", "add", "phone", "--overlay-addr", "10.1.2.3", "--qr"],
            &[],
        );
        assert_eq!(
            c.unwrap(),
            Command::Peer {
                interface: "wgoverlay".into(),
                action: PeerAction::Add {
                    name: "phone".into(),
                    public_key: None,
                    overlay: Some("10.1.2.3".into()),
                    qr: true
                }
            }
        );
        assert!(matches!(
            parse_env(&["peer", "remove", "phone"], &[]),
            Ok(Command::Peer {
                action: PeerAction::Remove(_),
                ..
            })
        ));
        assert!(error(&["peer", "list", "--qr"], &[]).contains("for `wesher peer add`"));
        assert!(error(&["peer", "add"], &[]).contains("usage: wesher peer"));
        assert!(error(&["peer", "add", "a#b"], &[]).contains("device node name"));
        assert!(error(&["key", "rotate", KEY], &[]).contains("unknown key action"));
        assert!(error(&["key", "install", "short"], &[]).contains("key:"));
        assert!(error(&["status", "--frob"], &[]).contains("unknown flag --frob"));
        assert!(error(&["status", "--interface", "a/b"], &[]).contains("--interface"));
    }

    #[test]
    fn cluster_key_file() {
        use crate::fsutil::testutil::TempDir;
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("keyfile");
        let path = dir.path().join("key");
        let p = path.to_str().unwrap();
        std::fs::write(&path, format!("  {KEY}\n\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = config(&["--cluster-key-file", p], &[]);
        assert_eq!(c.cluster_key, Some(SecretKey::from_base64(KEY).unwrap()));
        assert_eq!(c.cluster_key_file.as_deref(), Some(path.as_path()));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = config(&[], &[("WESHER_CLUSTER_KEY_FILE", p)]);
        assert_eq!(c.cluster_key, Some(SecretKey::from_base64(KEY).unwrap()));

        // Readable by others: it works, with a warning to log.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = config(&["--cluster-key-file", p], &[]);
        assert!(c.cluster_key.is_some());
        assert_eq!(
            c.warnings,
            [format!(
                "cluster key file {p} is readable by others than its owner (mode 0644): chmod 600 it"
            )]
        );

        // Not with a key given another way.
        let e = error(&["--cluster-key-file", p, "--cluster-key", KEY], &[]);
        assert!(e.contains("cannot be used together"), "{e}");
        let e = error(&["--cluster-key-file", p], &[("WESHER_CLUSTER_KEY", KEY)]);
        assert!(e.contains("cannot be used together"), "{e}");

        // Missing, a directory, not a key, too short: the path is named, the content is not.
        let missing = dir.path().join("nope");
        let e = error(&["--cluster-key-file", missing.to_str().unwrap()], &[]);
        assert!(
            e.starts_with(&format!(
                "--cluster-key-file {}: cannot open: ",
                missing.display()
            )) && e.contains("No such file"),
            "{e}"
        );
        let e = error(&["--cluster-key-file", dir.path().to_str().unwrap()], &[]);
        assert!(e.ends_with(": not a regular file"), "{e}");
        std::fs::write(&path, "sec%ret\n").unwrap();
        let e = error(&["--cluster-key-file", p], &[]);
        assert!(
            e.starts_with(&format!("--cluster-key-file {p}: not valid base64")),
            "{e}"
        );
        assert!(!e.contains("sec%ret"), "{e}");
        std::fs::write(&path, "c2hvcnQ=").unwrap();
        let e = error(&["--cluster-key-file", p], &[]);
        assert_eq!(
            e,
            format!("--cluster-key-file {p}: decodes to 5 bytes, expected 32")
        );
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(error(&["--cluster-key-file", p], &[]).ends_with("(not text)"));
        std::fs::write(&path, "").unwrap();
        assert!(error(&["--cluster-key-file", p], &[]).contains("expected 32"));
        // A big file is not read whole.
        std::fs::write(&path, "A".repeat(1 << 20)).unwrap();
        assert!(error(&["--cluster-key-file", p], &[]).starts_with("--cluster-key-file "));
    }

    #[test]
    fn hosts_file() {
        assert_eq!(config(&[], &[]).hosts_file, PathBuf::from("/etc/hosts"));
        let c = config(&["--hosts-file", "/tmp/hosts/wesher-wg0"], &[]);
        assert_eq!(c.hosts_file, PathBuf::from("/tmp/hosts/wesher-wg0"));
        let c = config(&[], &[("WESHER_HOSTS_FILE", "/srv/hosts")]);
        assert_eq!(c.hosts_file, PathBuf::from("/srv/hosts"));
        assert!(help_text().contains("[env: WESHER_HOSTS_FILE] [default: /etc/hosts]"));
    }

    #[test]
    fn routed_nets_and_overlay_addr() {
        let c = config(
            &[
                "--routed-net",
                "192.168.1.0/24,192.168.2.0/24",
                "--routed-net=172.16.0.0/12",
            ],
            &[],
        );
        let nets: Vec<String> = c.routed_nets.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["192.168.1.0/24", "192.168.2.0/24", "172.16.0.0/12"]);
        let c = config(&["--accept-routed-nets", "192.168.1.0/24,0.0.0.0/0"], &[]);
        assert_eq!(c.accept_routed_nets.len(), 2);
        let c = config(&[], &[("WESHER_ACCEPT_ROUTED_NETS", "10.5.0.0/16")]);
        assert_eq!(c.accept_routed_nets, vec!["10.5.0.0/16".parse().unwrap()]);
        assert!(error(&["--accept-routed-nets", "x"], &[]).contains("--accept-routed-nets"));
        let c = config(&[], &[("WESHER_ROUTED_NET", "fd00:1::/64")]);
        assert_eq!(c.routed_nets.len(), 1);
        assert!(
            error(&["--routed-net", "192.168.1.1/24"], &[]).contains("did you mean 192.168.1.0/24")
        );
        assert!(
            error(&["--routed-net", "10.1.0.0/16"], &[]).contains("overlaps the overlay network")
        );
        assert!(error(&["--routed-net", "nonsense"], &[]).contains("--routed-net"));
        let c = config(&["--overlay-addr", "10.1.2.3"], &[]);
        assert_eq!(c.overlay_addr, Some("10.1.2.3".parse().unwrap()));
        assert!(error(&["--overlay-addr", "192.168.0.1"], &[])
            .contains("not inside the overlay network"));
        assert!(error(
            &[
                "--overlay-net",
                "10.9.0.0/16",
                "--overlay-addr",
                "10.9.255.255"
            ],
            &[]
        )
        .contains("broadcast"));
    }
}
