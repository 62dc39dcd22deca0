//! The files a service manager hands wesher, end to end in network namespaces with
//! wireguard-go: the cluster key from --cluster-key-file / WESHER_CLUSTER_KEY_FILE (never in
//! argv or the environment), members written to a --hosts-file other than /etc/hosts (as the
//! OpenWrt package does for dnsmasq), and log lines split by priority: warnings and errors on
//! stderr, the rest on stdout.

mod common;

use common::netns::{
    assert_running, wait_for, Topology, CLUSTER_KEY, CONVERGE, DEFAULT_IFACE, WESHER,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn write_key(path: &std::path::Path, mode: u32) {
    fs::write(path, format!("{CLUSTER_KEY}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn key_file_hosts_file_and_log_streams() {
    let Some(topo) = Topology::new(2) else { return };
    let (n1, n2) = (topo.node(1), topo.node(2));
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);

    // node1: key file readable by its group (a warning), hosts in a file of its own, stderr
    // apart from stdout (a shell that redirects, then becomes wesher).
    let key1 = n1.dir().join("cluster.key");
    write_key(&key1, 0o640);
    let hosts1 = n1.dir().join("hosts-wesher");
    fs::write(&hosts1, "").unwrap();
    let stderr1 = n1.dir().join("wesher.stderr");
    let etc_hosts_before = n1.hosts();
    let mut cmd = n1.command("sh");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("WESHER_LOG_LEVEL", "debug")
        .args(["-c", "exec \"$0\" \"$@\" 2>\"$STDERR\""])
        .env("STDERR", &stderr1)
        .arg(WESHER)
        .arg("--state-dir")
        .arg(n1.state_dir())
        .args(["--gossip-profile", "lan", "--init", "--cluster-key-file"])
        .arg(&key1)
        .arg("--hosts-file")
        .arg(&hosts1);
    let mut agents = vec![n1.spawn("wesher", cmd)];

    // node2: the key file through the environment; /etc/hosts as usual.
    let key2 = n2.dir().join("cluster.key");
    write_key(&key2, 0o600);
    agents.push(
        n2.wesher()
            .env("WESHER_CLUSTER_KEY_FILE", key2.to_str().unwrap())
            .args(["--gossip-profile", "lan", "--join", &n1.ip.to_string()])
            .spawn(),
    );

    // The same key: they form a mesh. node2 reaches node1 by name (its /etc/hosts), node1's
    // names are in its own file and not in /etc/hosts.
    wait_for("node2 to ping node1 by name", CONVERGE, || {
        assert_running(&mut agents);
        n2.ping("node1")
    });
    let n2_overlay = n2.overlay_addr(DEFAULT_IFACE).unwrap();
    wait_for("node2 in node1's hosts file", CONVERGE, || {
        assert_running(&mut agents);
        let text = fs::read_to_string(&hosts1).unwrap_or_default();
        let lines = common::netns::managed_hosts(&text, DEFAULT_IFACE);
        if lines == [(n2_overlay.clone(), "node2".to_string())] {
            Ok(())
        } else {
            Err(format!("{} holds {text:?}", hosts1.display()))
        }
    });
    n1.ping(&n2_overlay).unwrap();
    assert_eq!(n1.hosts(), etc_hosts_before, "node1's /etc/hosts changed");

    // Stop node1: it removes its lines from its hosts file.
    let status = agents[0]
        .terminate(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("node1 ignored SIGTERM: {}", agents[0].log()));
    assert_eq!(status.code(), Some(0), "{}", agents[0].log());
    let text = fs::read_to_string(&hosts1).unwrap();
    assert_eq!(common::netns::managed_hosts(&text, DEFAULT_IFACE), []);

    // The key never shows in node1's output; the mode warning does, on stderr; every stderr
    // line is a warning or an error, and stdout has info and debug lines but none of those.
    let stdout = agents[0].log();
    let stderr = fs::read_to_string(&stderr1).unwrap();
    assert!(
        !stdout.contains(CLUSTER_KEY) && !stderr.contains(CLUSTER_KEY),
        "the key was logged"
    );
    let warning = format!(
        "cluster key file {} is readable by others than its owner (mode 0640)",
        key1.display()
    );
    assert!(stderr.contains(&warning), "stderr: {stderr}");
    for line in stderr.lines() {
        assert!(
            line.starts_with("WARN  [") || line.starts_with("ERROR ["),
            "not a warning or error on stderr: {line:?}\n{stderr}"
        );
    }
    assert!(
        stdout.lines().any(|l| l.starts_with("INFO  [wesher")),
        "no info lines on stdout: {stdout}"
    );
    for line in stdout.lines() {
        assert!(
            !line.starts_with("WARN ") && !line.starts_with("ERROR "),
            "a warning or error on stdout: {line:?}"
        );
    }
}
