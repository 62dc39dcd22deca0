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
        compact.contains(r#""read":{"ubus":{"wesher":["status"]},"uci":["wesher"]}"#),
        "{acl}"
    );
    assert!(
        compact.contains(r#""write":{"ubus":{"wesher":["generate_key"]},"uci":["wesher"]}"#),
        "{acl}"
    );

    let backend = read(&app.join("root/usr/share/rpcd/ucode/wesher.uc"));
    for needle in [
        "status --json --interface",
        "key generate",
        "return { wesher: methods };",
    ] {
        assert!(backend.contains(needle), "wesher.uc lacks {needle:?}");
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
        let flag = format!("--{}", option.replace('_', "-"));
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

/// Starts fake_rpcd.py with `uci` (JSON) as its configs and `wesher` as the command that runs
/// wesher; returns it and its base URL.
fn fake_rpcd(dir: &Path, uci: &str, wesher: &str) -> (Killed, String) {
    let uci_file = dir.join("uci.json");
    std::fs::write(&uci_file, uci).unwrap();
    let port_file = dir.join("port");
    let _ = std::fs::remove_file(&port_file);
    let child = Command::new("python3")
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

/// Runs browser_test.py; panics with its output unless every check passed.
fn browser_test(args: &[&str]) {
    let mut cmd = Command::new("python3");
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
    if !common::prerequisites(&["chromium", "python3", "timeout"]) {
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
        "old": {".type": "wesher", "enabled": "0", "interface": "wgold"}}}"#;
    let wesher = format!(
        "nsenter -t {} --mount --uts --net -- {WESHER}",
        nodes[0].holder_pid()
    );
    let (_rpcd, url) = fake_rpcd(&dir, uci, &wesher);
    let stop = agents[2].pid().to_string();
    browser_test(&["status", "--url", &url, "--stop-pid", &stop]);
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn settings_page_validates_like_the_agent_and_saves_through_uci() {
    if !common::prerequisites(&["chromium", "python3", "timeout"]) {
        return;
    }
    let dir = scratch("settings");
    let uci = format!(
        r#"{{"wesher": {{
        "wesher": {{".type": "wesher", "enabled": "1", "interface": "wgoverlay",
                    "cluster_key": "{CLUSTER_KEY}", "join": ["10.99.0.1", "node2.example:7946"],
                    "routed_net": ["192.168.1.0/24"]}},
        "old": {{".type": "wesher", "enabled": "0", "interface": "wgold"}}}}}}"#
    );
    let (_rpcd, url) = fake_rpcd(&dir, &uci, WESHER);
    browser_test(&["settings", "--url", &url]);
    let _ = std::fs::remove_dir_all(&dir);
}
