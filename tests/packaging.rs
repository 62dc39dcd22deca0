//! Packaging checks that need no router and no systemd running: the OpenWrt init script's
//! UCI-to-command-line translation and the package Makefile (shell tests in openwrt/tests/),
//! the systemd unit (systemd-analyze verify) and the cross scripts' syntax.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A missing tool skips the test on a dev machine, fails it in CI (which installs it).
fn require(tool: &str, package: &str) -> bool {
    if have(tool) {
        return true;
    }
    assert!(
        !in_ci(),
        "{tool} missing in CI: .ci/run must install {package}"
    );
    eprintln!("SKIP: {tool} not installed (apt-get install {package})");
    false
}

fn show(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_shell_test(shell: &[&str], script: &Path) {
    let out = Command::new(shell[0])
        .args(&shell[1..])
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shell:?}: {e}"));
    let report = show(&format!("{shell:?} {}", script.display()), &out);
    assert!(out.status.success(), "{report}");
    // The scripts end with "N passed, 0 failed"; make sure they ran their cases at all.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" passed, 0 failed") && !last.contains(": 0 passed"),
        "{report}"
    );
    println!("{last}");
}

/// Runs an openwrt/tests script with dash and, as OpenWrt would, busybox ash (stricter in
/// places). The scripts read procd's and netifd's JSON with jq.
fn run_openwrt_test(name: &str) {
    if !require("jq", "jq") {
        return;
    }
    let script = repo().join("openwrt/tests").join(name);
    run_shell_test(&["sh"], &script);
    if require("busybox", "busybox-static") {
        run_shell_test(&["busybox", "ash"], &script);
    }
}

#[test]
fn openwrt_init_script_translates_uci_config() {
    run_openwrt_test("init.sh");
}

#[test]
fn openwrt_proto_handler_drives_netifd() {
    run_openwrt_test("proto.sh");
}

/// The agent's options as `wesher --help` lists them: (flag without dashes, environment variable).
fn agent_options() -> Vec<(String, String)> {
    let help = wesher::config::help_text();
    let mut options = Vec::new();
    let mut lines = help.lines();
    while let Some(line) = lines.next() {
        let Some(flag) = line.strip_prefix("  --") else {
            continue;
        };
        let flag = flag.split_whitespace().next().unwrap_or_default();
        if flag == "version" {
            continue;
        }
        let env = lines
            .next()
            .and_then(|l| l.split("[env: ").nth(1))
            .and_then(|l| l.split(']').next())
            .unwrap_or_else(|| panic!("--{flag} has no [env: ...] line in --help"));
        options.push((flag.to_string(), env.to_string()));
    }
    assert!(
        options.len() >= 11,
        "too few options found in --help: {options:?}"
    );
    options
}

/// The init script passes every agent option (so each can be set in UCI), and only those.
#[test]
fn openwrt_init_covers_every_agent_option() {
    let init = std::fs::read_to_string(repo().join("openwrt/wesher/files/wesher.init"))
        .expect("read init script");
    let options = agent_options();
    for (flag, env) in &options {
        // The key goes in a file (--cluster-key-file): argv and the environment of an
        // instance are visible to every ubus client allowed to list services.
        if flag == "cluster-key" {
            assert!(
                !init.contains(&format!("--{flag} ")) && !init.contains(env.as_str()),
                "the init script hands the key over in argv or the environment"
            );
            continue;
        }
        assert!(
            init.contains(&format!(" --{flag}")),
            "the init script never passes --{flag} ({env})"
        );
    }
    for word in init.split(|c: char| c.is_whitespace() || c == '"') {
        if let Some(flag) = word.strip_prefix("--") {
            let flag = flag.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            assert!(
                options.iter().any(|(f, _)| f == flag),
                "the init script passes --{flag}, which wesher does not know"
            );
        }
    }
}

/// The example /etc/default/wesher names every agent variable.
#[test]
fn systemd_default_file_names_every_variable() {
    let default = std::fs::read_to_string(repo().join("dist/wesher.default")).expect("read");
    for (flag, env) in agent_options() {
        assert!(
            default.contains(&format!("#{env}=")),
            "dist/wesher.default lacks {env} (--{flag})"
        );
    }
}

#[test]
fn openwrt_makefile_follows_feed_conventions() {
    run_shell_test(&["sh"], &repo().join("openwrt/tests/makefile.sh"));
}

#[test]
fn systemd_unit_passes_verify() {
    if !require("systemd-analyze", "systemd") {
        return;
    }
    // verify insists that ExecStart exists: point it at the binary cargo built for this test.
    let unit = std::fs::read_to_string(repo().join("dist/wesher.service")).expect("read unit");
    let exec = "ExecStart=/usr/local/bin/wesher";
    assert!(unit.contains(exec), "the unit must start {exec}");
    let dir = std::env::temp_dir().join(format!("wesher-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("wesher.service");
    let local = unit.replace(exec, &format!("ExecStart={}", env!("CARGO_BIN_EXE_wesher")));
    std::fs::write(&path, local).expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
    let report = show("systemd-analyze verify", &out);
    // verify exits 0 on settings it ignores: any message is a failure.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{report}"
    );
}

#[test]
fn cross_scripts_parse() {
    for name in [
        "common.sh",
        "build",
        "test-emulated",
        "size-report",
        "qemu-run",
    ] {
        let out = Command::new("bash")
            .arg("-n")
            .arg(repo().join("cross").join(name))
            .output()
            .expect("run bash -n");
        assert!(out.status.success(), "{}", show(name, &out));
    }
}
