//! The state file, compatible with Go wesher: `<state_dir>/<interface>.json`, or v0.2's
//! `<state_dir>/state.json` when that is missing.
//!
//! `{"ClusterKey": "<base64>", "Nodes": [{"Name", "Addr", "Meta", "OverlayAddr", "PubKey"}]}`.
//! Go v0.3 fills Name, Addr (an IP string) and Meta (base64 gob) and writes OverlayAddr and PubKey
//! as ""; v0.2 wrote no Meta and `"OverlayAddr": {"IP": "...", "Mask": "..."}`. We read all of
//! these (only Name, Addr and Meta matter: the nodes are rejoin hints) and write v0.3's shape.
//!
//! A file that exists but cannot be read or parsed is an error, never "no state": the agent must
//! not replace a stored cluster key by a generated one. A node entry with a bad field is dropped
//! with a warning instead, since losing a rejoin hint is harmless.
//! Saving is atomic (temp file, fsync, rename, fsync of the directory); directory 0700, file 0600.

use crate::base64;
use crate::devices::Device;
use crate::fsutil::{self, Attrs, FsError};
use crate::json::{self, Value};
use crate::secret::SecretKey;
use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

use crate::wireguard::{Key, PrivateKey};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/wesher";
/// v0.2's single state file, read when the per-interface file is missing.
pub const LEGACY_FILE: &str = "state.json";

/// One known cluster member, as stored for rejoining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNode {
    pub name: String,
    pub addr: IpAddr,
    /// The member's gob metadata (empty for v0.2 files, which had none).
    pub meta: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    pub cluster_key: Option<SecretKey>,
    /// Keys accepted for decryption besides `cluster_key`, during a key rotation. Stored as
    /// `ClusterKeys`, a field Go wesher ignores.
    pub extra_keys: Vec<SecretKey>,
    pub nodes: Vec<StoredNode>,
    /// Devices without wesher (`wesher peer add`), stored as `Devices`, a field Go wesher ignores.
    pub devices: Vec<Device>,
    /// This node's WireGuard private key, kept (as `WireGuardKey`) only while it has devices:
    /// their configurations name its public key, which must survive restarts.
    pub wireguard_key: Option<PrivateKey>,
}

/// A state file that was found and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub state: State,
    /// The file it came from (the per-interface file or the v0.2 fallback).
    pub path: PathBuf,
    /// One message per node entry that was dropped, naming the entry and the field.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub enum StateError {
    /// The file exists but could not be read (permissions, a directory, I/O error).
    Unreadable(FsError),
    /// The file is not valid state JSON (truncated, corrupt, wrong shape or bad key).
    Corrupt { path: PathBuf, reason: String },
    /// Creating the directory or writing the file failed.
    Write(FsError),
    /// The OS random source failed while generating a cluster key.
    Random(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Unreadable(e) => write!(
                f,
                "state file: {e}; the stored cluster key was not overwritten (fix the file or \
                 its permissions, or pass --init to start a new cluster)"
            ),
            StateError::Corrupt { path, reason } => write!(
                f,
                "state file {} is corrupt or truncated ({reason}); the stored cluster key was not \
                 overwritten (repair or remove the file, or pass --init to start a new cluster)",
                path.display()
            ),
            StateError::Write(e) => write!(f, "saving state: {e}"),
            StateError::Random(e) => write!(f, "generating a cluster key: {e}"),
        }
    }
}

impl std::error::Error for StateError {}

/// `<dir>/<interface>.json`.
pub fn state_path(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("{iface}.json"))
}

/// Loads the state of `iface` from `dir`; Ok(None) when neither the per-interface file nor the
/// v0.2 fallback exists.
pub fn load(dir: &Path, iface: &str) -> Result<Option<Loaded>, StateError> {
    for path in [state_path(dir, iface), dir.join(LEGACY_FILE)] {
        if let Some(bytes) = fsutil::read_optional(&path).map_err(StateError::Unreadable)? {
            let bytes = Zeroizing::new(bytes);
            let (state, warnings) = parse(&bytes, &path)?;
            return Ok(Some(Loaded {
                state,
                path,
                warnings,
            }));
        }
    }
    Ok(None)
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StateError {
    StateError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Parses state file content; `path` is only used in messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<(State, Vec<String>), StateError> {
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt(path, "not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(corrupt(path, "empty file"));
    }
    let mut value =
        json::parse(text).map_err(|e| corrupt(path, format!("not valid JSON ({e})")))?;
    let parsed = parse_value(&value, path);
    // The keys' text does not outlive the parse.
    value.strings_mut(&mut |s| s.zeroize());
    parsed
}

fn parse_value(value: &Value, path: &Path) -> Result<(State, Vec<String>), StateError> {
    let top = value;
    if !matches!(top, Value::Object(_)) {
        return Err(corrupt(path, "top level is not a JSON object"));
    }

    let cluster_key = match top.get("ClusterKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            Some(SecretKey::from_base64(s).map_err(|e| corrupt(path, format!("ClusterKey {e}")))?)
        }
        Some(_) => return Err(corrupt(path, "ClusterKey is not a string")),
    };

    let mut extra_keys = Vec::new();
    match top.get("ClusterKeys") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let Value::String(s) = item else {
                    return Err(corrupt(path, format!("ClusterKeys[{i}] is not a string")));
                };
                let key = SecretKey::from_base64(s)
                    .map_err(|e| corrupt(path, format!("ClusterKeys[{i}] {e}")))?;
                if cluster_key.as_ref() != Some(&key) && !extra_keys.contains(&key) {
                    extra_keys.push(key);
                }
            }
        }
        Some(_) => return Err(corrupt(path, "ClusterKeys is not an array")),
    }

    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    match top.get("Nodes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match parse_node(item) {
                    Ok(node) => nodes.push(node),
                    Err(why) => warnings.push(format!(
                        "state file {}: ignoring Nodes[{i}]: {why}",
                        path.display()
                    )),
                }
            }
        }
        Some(_) => return Err(corrupt(path, "Nodes is not an array")),
    }
    let mut devices = Vec::new();
    if let Some(Value::Array(items)) = top.get("Devices") {
        for (i, item) in items.iter().enumerate() {
            match parse_device(item) {
                Ok(d) => devices.push(d),
                Err(why) => warnings.push(format!(
                    "state file {}: ignoring Devices[{i}]: {why}",
                    path.display()
                )),
            }
        }
    }
    let wireguard_key = match top.get("WireGuardKey") {
        Some(Value::String(s)) => Some(
            PrivateKey::from_base64(s).map_err(|e| corrupt(path, format!("WireGuardKey {e}")))?,
        ),
        _ => None,
    };
    Ok((
        State {
            cluster_key,
            extra_keys,
            nodes,
            devices,
            wireguard_key,
        },
        warnings,
    ))
}

fn parse_node(item: &Value) -> Result<StoredNode, String> {
    let obj = item;
    if !matches!(obj, Value::Object(_)) {
        return Err("not an object".into());
    }
    let name = match obj.get("Name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("Name missing or not a string".into()),
    };
    let addr = match obj.get("Addr") {
        Some(Value::String(s)) => s
            .parse::<IpAddr>()
            .map_err(|_| format!("node {name:?}: Addr {s:?} is not an IP address"))?,
        _ => return Err(format!("node {name:?}: Addr missing or not a string")),
    };
    let meta = match obj.get("Meta") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => {
            base64::decode(s).map_err(|e| format!("node {name:?}: Meta is not base64 ({e})"))?
        }
        Some(_) => return Err(format!("node {name:?}: Meta is not a string")),
    };
    // OverlayAddr ("" in v0.3, an {IP, Mask} object in v0.2) and PubKey are not needed to rejoin.
    Ok(StoredNode { name, addr, meta })
}

fn parse_device(item: &Value) -> Result<Device, String> {
    if !matches!(item, Value::Object(_)) {
        return Err("not an object".into());
    }
    let field = |name: &str| {
        item.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{name} missing or not a string"))
    };
    Ok(Device {
        name: field("Name")?.into(),
        public_key: Key::from_base64(field("PubKey")?).map_err(|e| format!("PubKey: {e}"))?,
        overlay: field("OverlayAddr")?
            .parse()
            .map_err(|_| "OverlayAddr is not an IP address".to_string())?,
    })
}

/// The JSON Go's `json.Marshal` would produce for the same state (Go's field order, v0.3 shape);
/// `ClusterKeys` (primary first) only while extra keys are installed, and `Devices` with
/// `WireGuardKey` only when devices are configured. Zeroized when dropped, as it holds the keys.
pub fn render(state: &State) -> Zeroizing<String> {
    // Members and devices are not secret: written first, then copied after the keys into one
    // buffer sized up front (growing it would leave copies of the keys behind).
    let mut nodes = String::new();
    json::array(&mut nodes, &state.nodes, |out, n| {
        let mut o = json::Object::new(out);
        o.str("Name", &n.name)
            .str("Addr", &n.addr.to_string())
            .str("Meta", &base64::encode(&n.meta))
            .str("OverlayAddr", "")
            .str("PubKey", "");
        o.end();
    });
    let mut devices = String::new();
    json::array(&mut devices, &state.devices, |out, d| {
        let mut o = json::Object::new(out);
        o.str("Name", &d.name)
            .str("PubKey", &d.public_key.to_base64())
            .str("OverlayAddr", &d.overlay.to_string());
        o.end();
    });
    let cluster_key = state.cluster_key.as_ref().map(SecretKey::to_base64);
    let keyring: Vec<Zeroizing<String>> = match state.extra_keys.is_empty() {
        true => Vec::new(),
        false => (state.cluster_key.iter().chain(&state.extra_keys))
            .map(SecretKey::to_base64)
            .collect(),
    };
    let wireguard_key = state.wireguard_key.as_ref().map(PrivateKey::to_base64);
    // Base64 needs no escapes; the names, brackets and quotes around the keys take at most 80
    // bytes, plus 3 per keyring entry.
    let keys_len: usize = (cluster_key.iter().chain(&keyring).chain(&wireguard_key))
        .map(|k| k.len() + 3)
        .sum();
    let mut out = Zeroizing::new(String::with_capacity(
        80 + keys_len + nodes.len() + devices.len(),
    ));
    let mut o = json::Object::new(&mut out);
    o.opt_str("ClusterKey", cluster_key.as_ref().map(|k| k.as_str()));
    if !keyring.is_empty() {
        o.strs(
            "ClusterKeys",
            &keyring.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        );
    }
    o.raw("Nodes", &nodes);
    if !state.devices.is_empty() {
        o.raw("Devices", &devices);
        if let Some(key) = &wireguard_key {
            o.str("WireGuardKey", key);
        }
    }
    o.end();
    out
}

/// Saves atomically to `<dir>/<iface>.json`, creating `dir` (0700) if needed.
pub fn save(dir: &Path, iface: &str, state: &State) -> Result<(), StateError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| {
            StateError::Write(FsError {
                action: "creating directory",
                path: dir.to_path_buf(),
                source,
            })
        })?;
    let attrs = Attrs {
        mode: 0o600,
        owner: None,
    };
    fsutil::write_atomic(&state_path(dir, iface), render(state).as_bytes(), attrs)
        .map_err(StateError::Write)
}

/// 32 random bytes from the OS.
pub fn generate_key() -> Result<SecretKey, StateError> {
    SecretKey::random().map_err(|e| StateError::Random(e.to_string()))
}

/// Where the cluster key in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// --cluster-key or WESHER_CLUSTER_KEY.
    Configured,
    /// The state file.
    Stored,
    /// Freshly generated: the caller must save it and may show it (on a terminal only).
    Generated,
}

/// Go's precedence: the configured key, else the stored one unless `init` (--init forgets the
/// state), else a new random key.
pub fn choose_key(
    configured: Option<SecretKey>,
    stored: Option<SecretKey>,
    init: bool,
) -> Result<(SecretKey, KeySource), StateError> {
    if let Some(k) = configured {
        return Ok((k, KeySource::Configured));
    }
    if let Some(k) = stored.filter(|_| !init) {
        return Ok((k, KeySource::Stored));
    }
    Ok((generate_key()?, KeySource::Generated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::testutil::TempDir;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    const KEY_B64: &str = "i5ETFXldQsVnuSTIB1RljwEp+rTPf7bZrpgc7yYt0Hc=";

    /// Written by Go 1.19's `json.MarshalIndent` for v0.3's state (Node with embedded nodeMeta).
    /// Go's `json.Unmarshal` was also checked to read `render`'s output back.
    const GO_V03: &str = r#"{
  "ClusterKey": "i5ETFXldQsVnuSTIB1RljwEp+rTPf7bZrpgc7yYt0Hc=",
  "Nodes": [
    {
      "Name": "node1",
      "Addr": "192.168.77.1",
      "Meta": "AQID",
      "OverlayAddr": "",
      "PubKey": ""
    },
    {
      "Name": "node6",
      "Addr": "fd00::6",
      "Meta": null,
      "OverlayAddr": "",
      "PubKey": ""
    }
  ]
}"#;

    /// Written by Go 1.19's `json.MarshalIndent` for v0.2's state (nodeMeta with net.IPNet, no Meta).
    const GO_V02: &str = r#"{
  "ClusterKey": "i5ETFXldQsVnuSTIB1RljwEp+rTPf7bZrpgc7yYt0Hc=",
  "Nodes": [
    {
      "Name": "node1",
      "Addr": "192.168.77.1",
      "OverlayAddr": {
        "IP": "10.221.153.165",
        "Mask": "/////w=="
      },
      "PubKey": "PuJQWAkFkvjvaGUdTvw6nkU5GNK1EN0/SaA999MERjw="
    }
  ]
}"#;

    fn key() -> SecretKey {
        SecretKey::from_base64(KEY_B64).unwrap()
    }

    #[test]
    fn parses_go_v03_state() {
        let (state, warnings) = parse(GO_V03.as_bytes(), Path::new("x.json")).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(state.cluster_key, Some(key()));
        assert_eq!(
            state.nodes,
            vec![
                StoredNode {
                    name: "node1".into(),
                    addr: "192.168.77.1".parse().unwrap(),
                    meta: vec![1, 2, 3],
                },
                StoredNode {
                    name: "node6".into(),
                    addr: "fd00::6".parse().unwrap(),
                    meta: vec![],
                },
            ]
        );
    }

    #[test]
    fn parses_go_v02_state() {
        let (state, warnings) = parse(GO_V02.as_bytes(), Path::new("state.json")).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(state.cluster_key, Some(key()));
        assert_eq!(state.nodes.len(), 1);
        assert_eq!(state.nodes[0].name, "node1");
        assert_eq!(
            state.nodes[0].addr,
            "192.168.77.1".parse::<IpAddr>().unwrap()
        );
        assert!(state.nodes[0].meta.is_empty());
    }

    #[test]
    fn parses_gos_null_fields() {
        // Go's json.Marshal of an empty state.
        let (state, _) = parse(br#"{"ClusterKey": null, "Nodes": null}"#, Path::new("x")).unwrap();
        assert_eq!(state, State::default());
        let (state, _) = parse(br#"{}"#, Path::new("x")).unwrap();
        assert_eq!(state, State::default());
    }

    #[test]
    fn render_round_trips_in_gos_shape() {
        let state = State {
            devices: Vec::new(),
            wireguard_key: None,
            cluster_key: Some(key()),
            extra_keys: Vec::new(),
            nodes: vec![StoredNode {
                name: "node1".into(),
                addr: "192.168.77.1".parse().unwrap(),
                meta: vec![1, 2, 3],
            }],
        };
        let text = render(&state);
        assert_eq!(
            *text,
            format!(
                r#"{{"ClusterKey":"{KEY_B64}","Nodes":[{{"Name":"node1","Addr":"192.168.77.1","Meta":"AQID","OverlayAddr":"","PubKey":""}}]}}"#
            )
        );
        assert_eq!(parse(text.as_bytes(), Path::new("x")).unwrap().0, state);
        // No key: null, as Go writes a nil []byte.
        assert_eq!(
            *render(&State::default()),
            r#"{"ClusterKey":null,"Nodes":[]}"#
        );
    }

    #[test]
    fn names_with_quotes_survive() {
        let state = State {
            devices: Vec::new(),
            wireguard_key: None,
            cluster_key: None,
            extra_keys: Vec::new(),
            nodes: vec![StoredNode {
                name: "we\"ird\\name\u{1}".into(),
                addr: "10.0.0.1".parse().unwrap(),
                meta: vec![],
            }],
        };
        assert_eq!(
            parse(render(&state).as_bytes(), Path::new("x")).unwrap().0,
            state
        );
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_file() {
        let path = Path::new("/var/lib/wesher/wg0.json");
        let truncated = &GO_V03[..GO_V03.len() / 2];
        for bad in [
            truncated,
            "",
            "   \n",
            "[]",
            "\"x\"",
            r#"{"ClusterKey": 5}"#,
            r#"{"ClusterKey": "not base64"}"#,
            r#"{"ClusterKey": "AAAA"}"#,
            r#"{"Nodes": {}}"#,
        ] {
            let e = parse(bad.as_bytes(), path).unwrap_err();
            assert!(matches!(e, StateError::Corrupt { .. }), "{bad:?}");
            let msg = e.to_string();
            assert!(msg.contains("/var/lib/wesher/wg0.json"), "{msg}");
            assert!(msg.contains("cluster key was not overwritten"), "{msg}");
        }
        let e = parse(r#"{"ClusterKey": "AAAA"}"#.as_bytes(), path).unwrap_err();
        assert!(e.to_string().contains("3 bytes, expected 32"), "{e}");
        assert!(parse(&[0xff, 0xfe], path).is_err());
    }

    #[test]
    fn bad_node_entries_are_dropped_with_warnings() {
        let text = format!(
            r#"{{"ClusterKey":"{KEY_B64}","Nodes":[
                {{"Name":"good","Addr":"10.0.0.1"}},
                {{"Name":"badaddr","Addr":"nope"}},
                {{"Addr":"10.0.0.2"}},
                {{"Name":"badmeta","Addr":"10.0.0.3","Meta":"!!"}},
                7
            ]}}"#
        );
        let (state, warnings) = parse(text.as_bytes(), Path::new("s.json")).unwrap();
        assert_eq!(state.cluster_key, Some(key()));
        assert_eq!(state.nodes.len(), 1);
        assert_eq!(state.nodes[0].name, "good");
        assert_eq!(warnings.len(), 4);
        assert!(warnings[0].contains("Nodes[1]") && warnings[0].contains("badaddr"));
        assert!(warnings[0].contains("s.json"));
    }

    #[test]
    fn load_prefers_interface_file_then_legacy() {
        let dir = TempDir::new("state-load");
        assert_eq!(load(dir.path(), "wg0").unwrap(), None);

        fs::write(dir.path().join("state.json"), GO_V02).unwrap();
        let loaded = load(dir.path(), "wg0").unwrap().unwrap();
        assert_eq!(loaded.path, dir.path().join("state.json"));
        assert_eq!(loaded.state.cluster_key, Some(key()));

        let other = State {
            devices: Vec::new(),
            wireguard_key: None,
            cluster_key: Some([9; 32].into()),
            extra_keys: Vec::new(),
            nodes: vec![],
        };
        save(dir.path(), "wg0", &other).unwrap();
        let loaded = load(dir.path(), "wg0").unwrap().unwrap();
        assert_eq!(loaded.path, dir.path().join("wg0.json"));
        assert_eq!(loaded.state, other);
        // Another interface still falls back to the legacy file.
        let loaded = load(dir.path(), "wg1").unwrap().unwrap();
        assert_eq!(loaded.path, dir.path().join("state.json"));
    }

    #[test]
    fn corrupt_interface_file_does_not_fall_back() {
        let dir = TempDir::new("state-corrupt");
        fs::write(dir.path().join("state.json"), GO_V02).unwrap();
        fs::write(dir.path().join("wg0.json"), "{\"ClusterKey\": \"i5ET").unwrap();
        let e = load(dir.path(), "wg0").unwrap_err();
        assert!(e.to_string().contains("wg0.json"), "{e}");
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let dir = TempDir::new("state-unreadable");
        // A directory where the file should be cannot be read, even by root.
        fs::create_dir(dir.path().join("wg0.json")).unwrap();
        let e = load(dir.path(), "wg0").unwrap_err();
        assert!(matches!(e, StateError::Unreadable(_)), "{e}");
        assert!(e.to_string().contains("wg0.json"), "{e}");
    }

    #[test]
    fn save_creates_private_dir_and_file() {
        let dir = TempDir::new("state-save");
        let state_dir = dir.path().join("nested").join("wesher");
        let state = State {
            devices: Vec::new(),
            wireguard_key: None,
            cluster_key: Some(key()),
            extra_keys: Vec::new(),
            nodes: vec![],
        };
        save(&state_dir, "wgoverlay", &state).unwrap();
        let file = state_dir.join("wgoverlay.json");
        assert_eq!(fs::metadata(&state_dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&file).unwrap(), *render(&state));
        // Saving again replaces the file (new inode: atomic rename) and leaves no temp files.
        let inode = fs::metadata(&file).unwrap().ino();
        save(&state_dir, "wgoverlay", &State::default()).unwrap();
        assert_ne!(fs::metadata(&file).unwrap().ino(), inode);
        assert_eq!(fs::read_dir(&state_dir).unwrap().count(), 1);
    }

    #[test]
    fn save_error_names_the_directory() {
        let dir = TempDir::new("state-save-err");
        let blocker = dir.path().join("file");
        fs::write(&blocker, "").unwrap();
        fs::set_permissions(&blocker, fs::Permissions::from_mode(0o600)).unwrap();
        let e = save(&blocker.join("sub"), "wg0", &State::default()).unwrap_err();
        assert!(e.to_string().contains("creating directory"), "{e}");
        assert!(
            e.to_string().contains(&blocker.display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn key_precedence() {
        let a = SecretKey::from([1; 32]);
        let b = SecretKey::from([2; 32]);
        let configured = (a.clone(), KeySource::Configured);
        let chosen = choose_key(Some(a.clone()), Some(b.clone()), false).unwrap();
        assert_eq!(chosen, configured);
        let chosen = choose_key(Some(a.clone()), Some(b.clone()), true).unwrap();
        assert_eq!(chosen, configured);
        let stored = (b.clone(), KeySource::Stored);
        assert_eq!(choose_key(None, Some(b.clone()), false).unwrap(), stored);
        let (k1, src) = choose_key(None, Some(b.clone()), true).unwrap();
        assert_eq!(src, KeySource::Generated, "--init ignores the stored key");
        assert_ne!(k1, b);
        let (k2, src) = choose_key(None, None, false).unwrap();
        assert_eq!(src, KeySource::Generated);
        assert_ne!(k1, k2, "two generated keys must differ");
    }

    #[test]
    fn keyring_of_a_rotation_round_trips_and_plain_state_stays_go_shaped() {
        let plain = State {
            devices: Vec::new(),
            wireguard_key: None,
            cluster_key: Some([1; 32].into()),
            extra_keys: Vec::new(),
            nodes: Vec::new(),
        };
        assert!(!render(&plain).contains("ClusterKeys"));
        let rotating = State {
            extra_keys: vec![[2; 32].into(), [3; 32].into()],
            ..plain
        };
        let text = render(&rotating);
        assert!(text.contains("ClusterKeys"), "{}", *text);
        let (back, warnings) = parse(text.as_bytes(), Path::new("x.json")).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(back, rotating);
        let err = parse(br#"{"ClusterKeys": ["short"]}"#, Path::new("x.json")).unwrap_err();
        assert!(err.to_string().contains("ClusterKeys[0]"), "{err}");
    }

    #[test]
    fn devices_and_our_wireguard_key_round_trip_after_the_go_fields() {
        let state = State {
            cluster_key: Some([1; 32].into()),
            devices: vec![Device {
                name: "phone".into(),
                public_key: Key([4; 32]),
                overlay: "10.1.2.3".parse().unwrap(),
            }],
            wireguard_key: Some([5; 32].into()),
            ..State::default()
        };
        let text = render(&state);
        assert!(text.starts_with(r#"{"ClusterKey":"#), "{}", *text);
        assert!(
            text.contains(r#","Devices":[{"Name":"phone","PubKey":"#),
            "{}",
            *text
        );
        let (back, warnings) = parse(text.as_bytes(), Path::new("x.json")).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(back, state);
        let bad = br#"{"Devices":[{"Name":"x","PubKey":"short","OverlayAddr":"10.0.0.1"}]}"#;
        let (back, warnings) = parse(bad, Path::new("x.json")).unwrap();
        assert!(back.devices.is_empty() && warnings[0].contains("Devices[0]"));
    }
}
