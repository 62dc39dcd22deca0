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
        "feed-like",
    ] {
        let out = Command::new("bash")
            .arg("-n")
            .arg(repo().join("cross").join(name))
            .output()
            .expect("run bash -n");
        assert!(out.status.success(), "{}", show(name, &out));
    }
}

/// A command's stdout; panics with its output when it fails.
fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(out.status.success(), "{}", show(program, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tar -tv` of an archive as (mode, owner, path) rows, directories left out.
fn listing(verbose: &str) -> Vec<(String, String, String)> {
    verbose
        .lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[5].to_string())
        })
        .collect()
}

fn row(mode: &str, owner: &str, path: &str) -> (String, String, String) {
    (mode.into(), owner.into(), path.into())
}

/// A control file's fields.
fn fields(control: &str) -> std::collections::BTreeMap<String, String> {
    control
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const TARGETS: [(&str, &str); 5] = [
    ("x86_64-unknown-linux-musl", "x86_64"),
    ("aarch64-unknown-linux-musl", "aarch64_generic"),
    ("armv7-unknown-linux-musleabihf", "arm_cortex-a7_neon-vfpv4"),
    ("mips-unknown-linux-musl", "mips_24kc"),
    ("mipsel-unknown-linux-musl", "mipsel_24kc"),
];

/// dist/release's packages, made from a small stand-in binary per target (the packaging does
/// not look inside it; cross/build's real binaries take many minutes): names, checksums, the
/// .ipk layout, control fields, files, modes and conffiles, the .deb's the same, the source
/// tarball's content, and that a second run gives the same bytes.
#[test]
fn release_packages() {
    for (tool, package) in [
        ("dpkg-deb", "dpkg"),
        ("tar", "tar"),
        ("sha256sum", "coreutils"),
    ] {
        if !require(tool, package) {
            return;
        }
    }
    let tmp = std::env::temp_dir().join(format!("wesher-release-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let bins = tmp.join("bin");
    for (target, _) in TARGETS {
        let dir = bins.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("wesher");
        std::fs::write(&bin, format!("#!/bin/sh\necho {target}\n")).unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let release = |out: &Path| {
        let out = Command::new(repo().join("dist/release"))
            .arg("--bin-dir")
            .arg(&bins)
            .arg("--out")
            .arg(out)
            .arg("--keep-makefile")
            .output()
            .expect("run dist/release");
        assert!(out.status.success(), "{}", show("dist/release", &out));
    };
    let out = tmp.join("out");
    release(&out);
    let o = |name: &str| out.join(name).display().to_string();
    let version = env!("CARGO_PKG_VERSION");

    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected: Vec<String> = vec![
        "SHA256SUMS".into(),
        format!("wesher-{version}.tar.gz"),
        format!("wesher-proto_{version}-r1_all.ipk"),
        format!("wesher_{version}-1_amd64.deb"),
        format!("wesher_{version}-1_arm64.deb"),
    ];
    for (target, arch) in TARGETS {
        expected.push(format!("wesher-{version}-{target}"));
        expected.push(format!("wesher_{version}-r1_{arch}.ipk"));
    }
    expected.sort();
    assert_eq!(names, expected);
    let sums = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", show("sha256sum -c", &sums));
    assert_eq!(
        std::fs::read_to_string(out.join("SHA256SUMS"))
            .unwrap()
            .lines()
            .count(),
        expected.len() - 1
    );

    // .ipk: ipkg-build's outer tar.gz, then the control and data archives.
    let unpack = tmp.join("unpack");
    for (target, arch) in TARGETS
        .iter()
        .map(|&(t, a)| (Some(t), a))
        .chain([(None, "all")])
    {
        let name = if target.is_some() {
            format!("wesher_{version}-r1_{arch}.ipk")
        } else {
            format!("wesher-proto_{version}-r1_all.ipk")
        };
        let members: Vec<String> = output("tar", &["-tzf", &o(&name)])
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(
            members,
            ["./debian-binary", "./data.tar.gz", "./control.tar.gz"],
            "{name}"
        );
        let _ = std::fs::remove_dir_all(&unpack);
        std::fs::create_dir_all(&unpack).unwrap();
        let u = unpack.display().to_string();
        output("tar", &["-xzf", &o(&name), "-C", &u]);
        assert_eq!(
            std::fs::read_to_string(unpack.join("debian-binary")).unwrap(),
            "2.0\n"
        );
        let control_tar = format!("{u}/control.tar.gz");
        let data_tar = format!("{u}/data.tar.gz");
        let control = fields(&output("tar", &["-xzOf", &control_tar, "./control"]));
        assert_eq!(control["Version"], format!("{version}-r1"), "{name}");
        assert_eq!(control["Architecture"], arch, "{name}");
        assert_eq!(control["License"], "GPL-3.0-only", "{name}");
        for field in [
            "Section",
            "URL",
            "Maintainer",
            "Description",
            "Installed-Size",
        ] {
            assert!(control.contains_key(field), "{name} lacks {field}");
        }
        let control_files = listing(&output("tar", &["-tvzf", &control_tar]));
        let data = listing(&output("tar", &["-tvzf", &data_tar]));
        if let Some(target) = target {
            assert_eq!(control["Package"], "wesher");
            assert_eq!(control["Depends"], "kmod-wireguard");
            assert_eq!(
                control_files,
                [
                    row("-rw-r--r--", "0/0", "./conffiles"),
                    row("-rw-r--r--", "0/0", "./control"),
                    row("-rwxr-xr-x", "0/0", "./postinst"),
                    row("-rwxr-xr-x", "0/0", "./prerm"),
                ]
            );
            assert_eq!(
                output("tar", &["-xzOf", &control_tar, "./conffiles"]),
                "/etc/config/wesher\n"
            );
            assert!(output("tar", &["-xzOf", &control_tar, "./postinst"])
                .contains("default_postinst $0 $@"));
            assert_eq!(
                data,
                [
                    row("-rw-------", "0/0", "./etc/config/wesher"),
                    row("-rwxr-xr-x", "0/0", "./etc/init.d/wesher"),
                    row("-rw-r--r--", "0/0", "./lib/upgrade/keep.d/wesher"),
                    row("-rwxr-xr-x", "0/0", "./usr/libexec/wesher-hosts-notify"),
                    row("-rwxr-xr-x", "0/0", "./usr/libexec/wesher-hotplug"),
                    row("-rwxr-xr-x", "0/0", "./usr/sbin/wesher"),
                ],
                "{name}"
            );
            // The target's own binary, and the package's own files.
            assert_eq!(
                output("tar", &["-xzOf", &data_tar, "./usr/sbin/wesher"]),
                format!("#!/bin/sh\necho {target}\n")
            );
            for (inside, file) in [
                ("./etc/init.d/wesher", "openwrt/wesher/files/wesher.init"),
                ("./etc/config/wesher", "openwrt/wesher/files/wesher.config"),
                (
                    "./lib/upgrade/keep.d/wesher",
                    "openwrt/wesher/files/wesher.keep",
                ),
            ] {
                assert_eq!(
                    output("tar", &["-xzOf", &data_tar, inside]),
                    std::fs::read_to_string(repo().join(file)).unwrap(),
                    "{inside}"
                );
            }
        } else {
            assert_eq!(control["Package"], "wesher-proto");
            assert_eq!(control["Depends"], "wesher");
            assert!(!control_files.iter().any(|r| r.2 == "./conffiles"));
            assert_eq!(
                data,
                [row("-rwxr-xr-x", "0/0", "./lib/netifd/proto/wesher.sh")]
            );
        }
    }

    // .deb: the static x86_64 and aarch64 binaries with the unit and /etc/default/wesher.
    for (arch, target) in [
        ("amd64", "x86_64-unknown-linux-musl"),
        ("arm64", "aarch64-unknown-linux-musl"),
    ] {
        let deb = o(&format!("wesher_{version}-1_{arch}.deb"));
        let control = fields(&output("dpkg-deb", &["-f", &deb]));
        assert_eq!(control["Package"], "wesher");
        assert_eq!(control["Version"], format!("{version}-1"));
        assert_eq!(control["Architecture"], arch);
        assert!(
            !control.contains_key("Depends"),
            "a static binary: {control:?}"
        );
        assert_eq!(
            output("dpkg-deb", &["-I", &deb, "conffiles"]),
            "/etc/default/wesher\n"
        );
        let files: Vec<(String, String, String)> = listing(&output("dpkg-deb", &["-c", &deb]));
        assert_eq!(
            files,
            [
                row("-rw-r--r--", "root/root", "./etc/default/wesher"),
                row(
                    "-rw-r--r--",
                    "root/root",
                    "./lib/systemd/system/wesher.service"
                ),
                row("-rwxr-xr-x", "root/root", "./usr/sbin/wesher"),
                row(
                    "-rw-r--r--",
                    "root/root",
                    "./usr/share/doc/wesher/copyright"
                ),
            ]
        );
        let _ = std::fs::remove_dir_all(&unpack);
        output("dpkg-deb", &["-x", &deb, &unpack.display().to_string()]);
        assert_eq!(
            std::fs::read_to_string(unpack.join("usr/sbin/wesher")).unwrap(),
            format!("#!/bin/sh\necho {target}\n")
        );
        let unit =
            std::fs::read_to_string(unpack.join("lib/systemd/system/wesher.service")).unwrap();
        let source = std::fs::read_to_string(repo().join("dist/wesher.service")).unwrap();
        assert_eq!(
            unit,
            source.replace(
                "ExecStart=/usr/local/bin/wesher\n",
                "ExecStart=/usr/sbin/wesher\n"
            )
        );
        assert_eq!(
            std::fs::read_to_string(unpack.join("etc/default/wesher")).unwrap(),
            std::fs::read_to_string(repo().join("dist/wesher.default")).unwrap()
        );
    }

    // The source tarball: what cargo install needs, under wesher-VERSION/, nothing else.
    let src = output("tar", &["-tzf", &o(&format!("wesher-{version}.tar.gz"))]);
    let prefix = format!("wesher-{version}/");
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "LICENSE",
        "src/main.rs",
        "src/lib.rs",
    ] {
        assert!(
            src.lines().any(|l| l == format!("{prefix}{needed}")),
            "{needed} missing"
        );
    }
    for line in src.lines() {
        assert!(line.starts_with(&prefix), "{line}");
        for unwanted in [".cargo/", "target/", "tests/", "openwrt/"] {
            assert!(!line.contains(unwanted), "{line}");
        }
    }

    // The same inputs give the same bytes (SOURCE_DATE_EPOCH: the last commit's time).
    let again = tmp.join("again");
    release(&again);
    assert_eq!(
        std::fs::read(out.join("SHA256SUMS")).unwrap(),
        std::fs::read(again.join("SHA256SUMS")).unwrap()
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}
