//! End-to-end test of `--on-change`, in network namespaces with wireguard-go: a hook that records
//! each of its runs (variables, stdin) sees a join, a leave and a burst of ten joins, the burst in
//! fewer runs than events and never two runs at once.

mod beyond_support;
mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use beyond_support::{start, wait_ping};
use common::netns::{
    assert_running, wait_for, Proc, Topology, CLUSTER_KEY, CONVERGE, DEFAULT_IFACE,
};
use miniserde::Deserialize;

#[derive(Deserialize, Debug)]
struct HookInput {
    interface: String,
    node: String,
    changes: Vec<HookChange>,
    members: Vec<HookMember>,
}

#[derive(Deserialize, Debug)]
struct HookChange {
    event: String,
    member: HookMember,
}

#[derive(Deserialize, Debug)]
struct HookMember {
    name: String,
    overlay: String,
    endpoint: String,
}

/// One run as the hook recorded it: its variables and its stdin.
#[derive(Debug)]
struct Run {
    vars: String,
    input: HookInput,
}

/// The hook: `start` and `end` lines around each run in `calls`, the run's variables and stdin
/// in between; it sleeps as long as the file `sleep` says, so runs can overlap if wesher let them.
fn hook_script(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "#!/bin/sh\n\
         echo start >> {d}/calls\n\
         input=$(cat)\n\
         sleep \"$(cat {d}/sleep 2>/dev/null || echo 0)\"\n\
         {{ echo \"vars event=$WESHER_EVENT member=$WESHER_MEMBER overlay=$WESHER_MEMBER_OVERLAY \
         endpoint=$WESHER_MEMBER_ENDPOINT changes=$WESHER_CHANGES iface=$WESHER_INTERFACE \
         key=${{WESHER_CLUSTER_KEY:-unset}}\"\n\
         echo \"input $input\"; echo end; }} >> {d}/calls\n"
    )
}

/// The finished runs so far; panics if two ever overlapped.
fn runs(calls: &Path) -> Vec<Run> {
    let mut text = fs::read_to_string(calls).unwrap_or_default();
    // Only whole runs: the last one may still be writing.
    text.truncate(text.rfind("\nend\n").map_or(0, |i| i + 5));
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        assert_eq!(line, "start", "runs overlap or are malformed:\n{text}");
        let (vars, input, end) = (lines.next(), lines.next(), lines.next());
        let (Some(vars), Some(json), Some("end")) = (
            vars.and_then(|l| l.strip_prefix("vars ")),
            input.and_then(|l| l.strip_prefix("input ")),
            end,
        ) else {
            panic!("runs overlap or are malformed:\n{text}");
        };
        let vars = vars.to_string();
        let input = miniserde::json::from_str(json)
            .unwrap_or_else(|e| panic!("stdin of the hook is not the JSON expected: {e}: {json}"));
        out.push(Run { vars, input });
    }
    out
}

/// Waits for a finished run whose variables contain `vars`.
fn wait_run(calls: &Path, agents: &mut [Proc], vars: &str) -> Run {
    wait_for(format!("a run with {vars}"), CONVERGE, || {
        assert_running(agents);
        runs(calls)
            .into_iter()
            .find(|r| r.vars.contains(vars))
            .ok_or_else(|| format!("runs so far: {:?}", runs(calls)))
    })
}

#[test]
fn on_change_runs_for_joins_a_leave_and_a_coalesced_burst() {
    let Some(topo) = Topology::new(12) else {
        return;
    };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let n1 = topo.node(1);
    let dir = n1.dir().join("hook");
    fs::create_dir_all(&dir).unwrap();
    let script = dir.join("on-change");
    fs::write(&script, hook_script(&dir)).unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let calls = dir.join("calls");
    let hook = script.display().to_string();
    let seed = n1.ip.to_string();
    let mut agents = vec![n1
        .wesher()
        .args(beyond_support::LAN)
        .args(["--init", "--on-change", &hook])
        .env("WESHER_CLUSTER_KEY", CLUSTER_KEY)
        .spawn()];

    // A join: one run, naming the member in its variables and in the mesh on stdin.
    let n2 = topo.node(2);
    agents.push(start(n2, CLUSTER_KEY, Some(&seed), &[]));
    wait_ping(n1, "node2", &mut agents);
    let joined = wait_run(&calls, &mut agents, "event=join member=node2 ");
    let overlay2 = n2.overlay_addr(DEFAULT_IFACE).unwrap();
    assert_eq!(
        joined.vars,
        format!(
            "event=join member=node2 overlay={overlay2} endpoint={}:51820 changes=1 \
             iface={DEFAULT_IFACE} key=unset",
            n2.ip
        )
    );
    assert_eq!(
        (joined.input.interface.as_str(), joined.input.node.as_str()),
        (DEFAULT_IFACE, "node1")
    );
    let m = &joined.input.members;
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        (m[0].name.as_str(), m[0].overlay.as_str()),
        ("node2", overlay2.as_str())
    );
    assert_eq!(m[0].endpoint, format!("{}:51820", n2.ip));

    // A leave.
    let mut n2_agent = agents.pop().unwrap();
    assert!(n2_agent.terminate(Duration::from_secs(20)).is_some());
    let left = wait_run(&calls, &mut agents, "event=leave member=node2 ");
    assert!(left.input.members.is_empty(), "{:?}", left.input);
    let before_burst = runs(&calls).len();

    // A burst: ten members join at once while each run takes two seconds.
    fs::write(dir.join("sleep"), "2").unwrap();
    for i in 3..=12 {
        agents.push(start(topo.node(i), CLUSTER_KEY, Some(&seed), &[]));
    }
    let burst: Vec<String> = (3..=12).map(|i| format!("node{i}")).collect();
    let after = wait_for("runs covering all ten joins", CONVERGE, || {
        assert_running(&mut agents);
        let all = runs(&calls);
        let after: Vec<Run> = all.into_iter().skip(before_burst).collect();
        let last_members: Vec<&str> = after
            .last()
            .map(|r| r.input.members.iter().map(|m| m.name.as_str()).collect())
            .unwrap_or_default();
        if last_members.len() == burst.len() {
            Ok(after)
        } else {
            Err(format!("members in the last run so far: {last_members:?}"))
        }
    });
    let mut joined: Vec<&str> = after
        .iter()
        .flat_map(|r| &r.input.changes)
        .filter(|c| c.event == "join")
        .map(|c| c.member.name.as_str())
        .collect();
    joined.sort_unstable();
    joined.dedup();
    let mut expected: Vec<&str> = burst.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(joined, expected, "every join told once: {after:?}");
    assert!(
        after.len() < burst.len(),
        "ten joins in {} runs: not coalesced",
        after.len()
    );
    for r in &after {
        assert!(
            r.vars
                .contains(&format!("changes={} ", r.input.changes.len())),
            "{r:?}"
        );
    }
}

/// The OpenWrt package's default `--on-change` program (openwrt/wesher/files/wesher.hotplug) run
/// by a real agent: each change becomes one `hotplug-call wesher` with OpenWrt's variables.
/// Stand-ins, in a mount namespace of the hook's own: `/sbin/hotplug-call` records its
/// environment (the real one sources /etc/hotplug.d/wesher/*), and `jsonfilter` is jq with the
/// script's two expression forms translated (`@.a[N].b` and `@.a[N].b[*]`); jsonfilter's other
/// syntax is not covered.
#[test]
fn the_openwrt_hotplug_bridge_turns_each_change_into_an_event() {
    if !common::prerequisites(&["jq", "unshare"]) {
        return;
    }
    let Some(topo) = Topology::new(2) else {
        return;
    };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let (n1, n2) = (topo.node(1), topo.node(2));
    let dir = n1.dir().join("hotplug");
    let (bin, sbin) = (dir.join("bin"), dir.join("sbin"));
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(&sbin).unwrap();
    let events = dir.join("events");
    let executable = |path: &Path, text: &str| {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    executable(
        &bin.join("jsonfilter"),
        "#!/bin/sh\n[ \"$1\" = -e ] || exit 2\n\
         expr=$(printf '%s' \"$2\" | sed 's/^@//; s/\\[\\*\\]$/[]/')\n\
         exec jq -r \"$expr // empty\"\n",
    );
    executable(
        &sbin.join("hotplug-call"),
        &format!(
            "#!/bin/sh\n{{ echo \"type=$1\"; env | grep -v '^PWD=\\|^SHLVL=\\|^_=' | sort; echo end; }} >> {}\n",
            events.display()
        ),
    );
    let bridge = Path::new(env!("CARGO_MANIFEST_DIR")).join("openwrt/wesher/files/wesher.hotplug");
    let hook = dir.join("on-change");
    executable(
        &hook,
        &format!(
            "#!/bin/sh\nexec unshare -m sh -c 'mount --bind {} /sbin && PATH={}:$PATH exec sh {}'\n",
            sbin.display(),
            bin.display(),
            bridge.display()
        ),
    );
    let hook = hook.display().to_string();
    let mut agents = vec![start(n1, CLUSTER_KEY, None, &["--on-change", &hook])];
    let seed = n1.ip.to_string();
    agents.push(start(
        n2,
        CLUSTER_KEY,
        Some(&seed),
        &["--routed-net", "192.168.7.0/24,192.168.8.0/24"],
    ));
    wait_ping(n1, "node2", &mut agents);
    let overlay2 = n2.overlay_addr(DEFAULT_IFACE).unwrap();
    let expected = |action: &str| {
        format!(
            "type=wesher\nACTION={action}\nINTERFACE={DEFAULT_IFACE}\nMEMBER=node2\n\
             MEMBER_ENDPOINT={}:51820\nMEMBER_OVERLAY={overlay2}\n\
             MEMBER_ROUTED_NETS=192.168.7.0/24 192.168.8.0/24\nend\n",
            n2.ip
        )
    };
    let join = expected("join");
    wait_for("the join event", CONVERGE, || {
        assert_running(&mut agents);
        let got = fs::read_to_string(&events).unwrap_or_default();
        (got == join).then_some(()).ok_or(got)
    });
    let mut n2_agent = agents.pop().unwrap();
    assert!(n2_agent.terminate(Duration::from_secs(20)).is_some());
    let both = format!("{join}{}", expected("leave"));
    wait_for("the leave event", CONVERGE, || {
        assert_running(&mut agents);
        let got = fs::read_to_string(&events).unwrap_or_default();
        (got == both).then_some(()).ok_or(got)
    });
}
