//! luci-app-wesher: its files as the LuCI feed expects them, and its two views in headless
//! Chromium (tests/luci/browser_test.py) against the LuCI API stand-in and a fake rpcd
//! (tests/luci/fake_rpcd.py) whose status answers come from the real `wesher status --json` of
//! agents in a namespace mesh. Also `wesher key generate`, which the settings page calls.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{wait_for, Node, Proc, Topology, CLUSTER_KEY, CONVERGE, DEFAULT_IFACE, WESHER};

fn app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("openwrt/luci-app-wesher")
}

fn luci_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/luci")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn key_generate_prints_a_new_32_byte_key() {
    let run = || {
        let out = Command::new(WESHER)
            .args(["key", "generate"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let key = text.strip_suffix('\n').expect("one line").to_string();
        assert_eq!(key.len(), 44, "{key:?}");
        wesher::base64::decode_key(&key).unwrap_or_else(|e| panic!("{key:?}: {e}"));
        key
    };
    assert_ne!(run(), run(), "two keys in a row must differ");
    let out = Command::new(WESHER)
        .args(["key", "generate", "extra"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: wesher key"));
}

#[test]
fn app_is_laid_out_as_the_luci_feed_expects() {
    let app = app_dir();
    let makefile = read(&app.join("Makefile"));
    for line in [
        "LUCI_DEPENDS:=+wesher",
        "LUCI_PKGARCH:=all",
        "include ../../luci.mk",
        "include $(TOPDIR)/rules.mk",
    ] {
        assert!(
            makefile.lines().any(|l| l == line),
            "Makefile lacks {line:?}"
        );
    }
    assert!(makefile.lines().any(|l| l.starts_with("LUCI_TITLE:=")));

    let parse = |rel: &str| -> miniserde::json::Value {
        miniserde::json::from_str(&read(&app.join(rel)))
            .unwrap_or_else(|_| panic!("{rel}: not JSON"))
    };
    use miniserde::json::Value;
    let Value::Object(menu) = parse("root/usr/share/luci/menu.d/luci-app-wesher.json") else {
        panic!("menu is not an object")
    };
    for (entry, view) in [
        ("admin/services/wesher/status", "wesher/status"),
        ("admin/services/wesher/settings", "wesher/settings"),
    ] {
        let Some(Value::Object(e)) = menu.get(entry) else {
            panic!("menu lacks {entry}")
        };
        let Some(Value::Object(action)) = e.get("action") else {
            panic!("{entry}: no action")
        };
        assert!(matches!(action.get("type"), Some(Value::String(t)) if t == "view"));
        assert!(matches!(action.get("path"), Some(Value::String(p)) if p == view));
        let js = app.join(format!("htdocs/luci-static/resources/view/{view}.js"));
        let source = read(&js);
        // Only LuCI's public client modules.
        for line in source.lines().filter(|l| l.starts_with("'require ")) {
            let module = line.trim_start_matches("'require ").trim_end_matches("';");
            assert!(
                [
                    "view",
                    "form",
                    "rpc",
                    "uci",
                    "poll",
                    "ui",
                    "dom",
                    "baseclass"
                ]
                .contains(&module),
                "{}: requires {module}",
                js.display()
            );
        }
    }

    // The ACL: the status call to read, key generation and the wesher config to write, no more.
    let acl = read(&app.join("root/usr/share/rpcd/acl.d/luci-app-wesher.json"));
    let compact: String = acl.split_whitespace().collect();
    assert!(
        compact.contains(r#""read":{"ubus":{"luci.wesher":["status"]},"uci":["wesher"]}"#),
        "{acl}"
    );
    assert!(
        compact.contains(r#""write":{"ubus":{"luci.wesher":["generate_key"]},"uci":["wesher"]}"#),
        "{acl}"
    );

    let backend = read(&app.join("root/usr/share/rpcd/ucode/wesher.uc"));
    for needle in [
        "status --json --interface",
        "key generate",
        "return { 'luci.wesher': methods };",
    ] {
        assert!(backend.contains(needle), "wesher.uc lacks {needle:?}");
    }
}

/// The fields of `wesher status --json` are exactly those the README's schema table documents,
/// at the top level and per member (LuCI, scripts and monitoring read them).
#[test]
fn status_json_fields_are_the_documented_ones() {
    use miniserde::json::Value;
    use wesher::control::{MemberStatus, Status, STATUS_VERSION};
    let member = MemberStatus {
        name: "n".into(),
        overlay: String::new(),
        underlay: String::new(),
        state: "alive".into(),
        public_key: String::new(),
        handshake_age_secs: None,
        rx_bytes: 0,
        tx_bytes: 0,
    };
    let status = Status {
        version: STATUS_VERSION,
        interface: "wgoverlay".into(),
        node: member.clone(),
        members: vec![member],
        counters: Default::default(),
    };
    let Ok(Value::Object(top)) = miniserde::json::from_str::<Value>(&status.to_json()) else {
        panic!("status is not a JSON object")
    };
    let Some(Value::Object(node)) = top.get("node") else {
        panic!("no node object")
    };
    let mut actual: Vec<String> = top.keys().cloned().collect();
    actual.extend(node.keys().map(|k| format!("member {k}")));
    actual.sort();

    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    let section = readme
        .split("### Status JSON")
        .nth(1)
        .and_then(|rest| rest.split("\n#").next())
        .expect("README has a Status JSON section");
    let mut documented = Vec::new();
    for row in section
        .lines()
        .filter(|l| l.starts_with("| `") || l.starts_with("| member `"))
    {
        let field = row
            .trim_start_matches("| ")
            .split(" |")
            .next()
            .unwrap_or("");
        let prefix = if field.starts_with("member ") {
            "member "
        } else {
            ""
        };
        for name in field.split('`').skip(1).step_by(2) {
            documented.push(format!("{prefix}{name}"));
        }
    }
    documented.sort();
    assert_eq!(
        actual, documented,
        "status JSON fields vs the README's table"
    );
    assert_eq!(
        STATUS_VERSION, 1,
        "a new version needs the README's promise and LuCI's check"
    );
}

/// Every option of the wesher package's /etc/config/wesher and every agent flag (by its UCI
/// name) has a field on the settings page.
#[test]
fn settings_page_has_every_uci_option_and_flag() {
    let settings = read(&app_dir().join("htdocs/luci-static/resources/view/wesher/settings.js"));
    let config =
        read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("openwrt/wesher/files/wesher.config"));
    let mut names: Vec<String> = config
        .lines()
        .map(|l| l.trim().trim_start_matches('#'))
        .filter_map(|l| {
            l.strip_prefix("option ")
                .or_else(|| l.strip_prefix("list "))
        })
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 20, "{names:?}");
    let help = Command::new(WESHER).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for flag in help.lines().filter_map(|l| l.strip_prefix("  --")) {
        let flag = flag.split_whitespace().next().unwrap_or("");
        match flag {
            // The package writes cluster_key into a 0600 file and passes that file itself.
            "version" | "help" | "cluster-key-file" => {}
            // The package's list of CIDRs is singular, like routed_net.
            "accept-routed-nets" => names.push("accept_routed_net".into()),
            _ => names.push(flag.replace('-', "_")),
        }
    }
    for name in &names {
        assert!(
            settings.contains(&format!("'{name}', _(")),
            "the settings page has no field for {name}"
        );
    }
}

/// The settings page's validation cases (the browser test checks the page's verdict on each)
/// against the agent's own parser: a refused value is an error naming its flag, an accepted one
/// parses.
#[test]
fn validation_cases_match_the_agents_parser() {
    use miniserde::json::Value;
    let text = read(&luci_tests().join("validation-cases.json"));
    let Ok(Value::Array(cases)) = miniserde::json::from_str::<Value>(&text) else {
        panic!("validation-cases.json is not a JSON array")
    };
    assert!(cases.len() >= 30);
    for case in &cases {
        let Value::Object(case) = case else {
            panic!("{text}")
        };
        let field = |k: &str| match case.get(k) {
            Some(Value::String(s)) => s.clone(),
            other => panic!("case field {k}: {other:?}"),
        };
        let (option, value) = (field("option"), field("value"));
        let refused = matches!(case.get("refused"), Some(Value::Bool(true)));
        // The flag is the option's name with '-' for '_', unless the case names it.
        let flag = match case.get("flag") {
            Some(Value::String(f)) => f.clone(),
            _ => format!("--{}", option.replace('_', "-")),
        };
        let parsed = wesher::config::parse_from([flag.as_str(), value.as_str()], |_| None);
        match (refused, parsed) {
            (true, Err(e)) => assert!(
                e.to_string().starts_with(&flag),
                "{option} {value:?}: the error names another option: {e}"
            ),
            (false, Ok(_)) => {}
            (true, Ok(_)) => panic!("the page refuses {option} {value:?}, the agent accepts it"),
            (false, Err(e)) => panic!("the page accepts {option} {value:?}, the agent says: {e}"),
        }
    }
}

/// A process we started, killed by PID when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `program` in `ns`, a namespace with only a loopback: the fake rpcd and Chromium run there, so
/// nothing the browser might try reaches beyond it.
fn in_netns(ns: &common::Netns, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, program]);
    cmd
}

/// Starts fake_rpcd.py in `ns` with `uci` (JSON) as its configs and `wesher` as the command that
/// runs wesher; returns it and its base URL.
fn fake_rpcd(ns: &common::Netns, dir: &Path, uci: &str, wesher: &str) -> (Killed, String) {
    let uci_file = dir.join("uci.json");
    std::fs::write(&uci_file, uci).unwrap();
    let port_file = dir.join("port");
    let _ = std::fs::remove_file(&port_file);
    let child = in_netns(ns, "python3")
        .arg(luci_tests().join("fake_rpcd.py"))
        .arg("--uci")
        .arg(&uci_file)
        .args(["--wesher", wesher])
        .arg("--port-file")
        .arg(&port_file)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting fake_rpcd.py");
    let rpcd = Killed(child);
    let port = wait_for("fake rpcd to listen", Duration::from_secs(30), || {
        std::fs::read_to_string(&port_file).map_err(|e| e.to_string())
    });
    (rpcd, format!("http://127.0.0.1:{port}"))
}

/// Runs browser_test.py in `ns`; panics with its output unless every check passed.
fn browser_test(ns: &common::Netns, args: &[&str]) {
    let mut cmd = in_netns(ns, "python3");
    cmd.arg(luci_tests().join("browser_test.py")).args(args);
    if let Some(dir) = std::env::var_os("WESHER_LUCI_SCREENSHOTS") {
        cmd.arg("--screenshot")
            .arg(Path::new(&dir).join(format!("luci-{}.png", args[0])));
    }
    let start = Instant::now();
    let out = cmd.output().expect("running browser_test.py");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "browser test {} failed:\n{text}",
        args[0]
    );
    assert!(text.contains("ok: no script errors on the page"));
    println!("browser test {} took {:?}", args[0], start.elapsed());
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wesher-luci-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn agent<'a>(node: &'a Node, join: Option<&str>) -> Proc<'a> {
    let cmd = node.wesher().args(["--cluster-key", CLUSTER_KEY]);
    match join {
        None => cmd.arg("--init"),
        Some(seed) => cmd.args(["--join", seed]),
    }
    .spawn()
}

#[test]
fn status_page_shows_the_real_mesh_and_follows_it() {
    if !common::prerequisites(&["chromium", "python3", "timeout", "ip"]) {
        return;
    }
    let Some(topo) = Topology::new(3) else { return };
    let nodes: Vec<&Node> = topo.nodes().iter().collect();
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let seed = nodes[0].ip.to_string();
    let mut agents = vec![
        agent(nodes[0], None),
        agent(nodes[1], Some(&seed)),
        agent(nodes[2], Some(&seed)),
    ];
    for (from, to) in [(0, "node2"), (0, "node3"), (1, "node3")] {
        wait_for(format!("node{} to ping {to}", from + 1), CONVERGE, || {
            common::netns::assert_running(&mut agents);
            nodes[from].ping(to)
        });
    }
    // Traffic while the page polls, so that its counters must move.
    let _pings: Vec<Proc> = ["node2", "node3"]
        .iter()
        .map(|to| {
            let mut cmd = nodes[0].command("ping");
            cmd.args(["-i", "0.2", "-w", "300", to]);
            nodes[0].spawn("ping", cmd)
        })
        .collect();

    let dir = scratch("status");
    let uci = r#"{"wesher": {
        "wesher": {".type": "wesher", "enabled": "1", "interface": "wgoverlay"},
        "lab": {".type": "wesher", "enabled": "1", "interface": "wglab"},
        "old": {".type": "wesher", "enabled": "0", "interface": "wgold"}},
        "luci": {"main": {".type": "core", "lang": "auto"}}}"#;
    let wesher = format!(
        "nsenter -t {} --mount --uts --net -- {WESHER}",
        nodes[0].holder_pid()
    );
    let ns = common::Netns::new();
    let (rpcd, url) = fake_rpcd(&ns, &dir, uci, &wesher);
    let stop = agents[2].pid().to_string();
    browser_test(&ns, &["status", "--url", &url, "--stop-pid", &stop]);
    drop(rpcd);
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn settings_page_validates_like_the_agent_and_saves_through_uci() {
    if !common::prerequisites(&["chromium", "python3", "timeout", "ip"]) {
        return;
    }
    let dir = scratch("settings");
    let uci = format!(
        r#"{{"wesher": {{
        "wesher": {{".type": "wesher", "enabled": "1", "interface": "wgoverlay",
                    "cluster_key": "{CLUSTER_KEY}", "join": ["10.99.0.1", "node2.example:7946"],
                    "routed_net": ["192.168.1.0/24"]}},
        "old": {{".type": "wesher", "enabled": "0", "interface": "wgold"}}}},
        "luci": {{"main": {{".type": "core", "lang": "auto"}}}}}}"#
    );
    let ns = common::Netns::new();
    let (rpcd, url) = fake_rpcd(&ns, &dir, &uci, WESHER);
    browser_test(&ns, &["settings", "--url", &url]);
    drop(rpcd);
    let _ = std::fs::remove_dir_all(&dir);
}
