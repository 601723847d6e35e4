//! Crash tests: every plugin that keeps state is SIGKILLed at a random point of ADD,
//! over and over (alone, or with its whole process group, children included), then
//! the runtime's DEL follows (without a result: it never got one), and at the end a
//! GC with no valid attachment. Nothing may be left: links, addresses, routes, rules,
//! reservations (empty ones included), temporary files, firewall rules.
//! `docs/reliability.md` reports the figures; `KILLS` sets the number of killed ADDs.

mod common;

use std::time::{Duration, Instant};

use cni_testkit::conformance::{SandboxTarget, Target};
use cni_testkit::{Sandbox, require_root};
use common::{call, plugin, plugin_dir};
use serde_json::{Value, json};

/// Killed ADDs (the plugin still running when the signal came) per plugin.
fn kills() -> usize {
    std::env::var("KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(200)
}

/// A small deterministic generator: the seed is printed, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(7)
                    | 1
            });
        eprintln!("CRASH_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Kills `name`'s ADD at random points until `kills()` of them hit a running
/// plugin, DELs each attachment, GCs, and requires the state of a network after one
/// clean attachment came and went.
fn crash(name: &str, conf: Value) {
    crash_in(name, |_| conf.clone());
}

/// [`crash`] with the configuration made from the sandbox (after preparing it).
fn crash_in(name: &str, conf_for: impl Fn(&Sandbox) -> Value) {
    let sandbox = Sandbox::new();
    let conf = conf_for(&sandbox);
    let binary = plugin(name);
    let path = plugin_dir().display().to_string();
    let netns = sandbox.container_path();
    let conf = conf.to_string();
    let target = SandboxTarget {
        sandbox: &sandbox,
        binary: &binary,
        path: path.clone(),
    };

    // Clean ADDs and DELs: what stays for good (bridge, lock file, shared chains) is
    // then there, and the fastest ADD sets the window to kill in (the first one also
    // creates the shared state and can be many times slower, which made a window in
    // which most ADDs finished).
    let mut took = Duration::MAX;
    for i in 0..3 {
        let id = format!("warm-up-{i}");
        let start = Instant::now();
        let out = sandbox.run_plugin(&binary, &call("ADD", &id, &netns, &path), &conf);
        took = took.min(start.elapsed());
        assert_eq!(out.code, 0, "{out:?}");
        let out = sandbox.run_plugin(&binary, &call("DEL", &id, &netns, &path), &conf);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let baseline = target.state();

    let mut rng = Rng::new();
    let window = (took.as_micros() as u64 * 3 / 2).max(500);
    let (mut killed, mut finished) = (0, 0);
    for i in 0..kills() * 4 {
        if killed >= kills() {
            break;
        }
        let id = format!("k{i}");
        let after = Duration::from_micros(rng.below(window));
        let group = i % 2 == 1;
        if sandbox.kill_plugin_after(
            &binary,
            &call("ADD", &id, &netns, &path),
            &conf,
            after,
            group,
        ) {
            killed += 1;
        } else {
            finished += 1;
        }
        let out = sandbox.run_plugin(&binary, &call("DEL", &id, &netns, &path), &conf);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, ""),
            "DEL after a kill at {after:?} (group {group}): {out:?}"
        );
    }
    assert!(
        killed >= kills(),
        "only {killed} of the ADDs were killed running"
    );

    let mut gc: Value = serde_json::from_str(&conf).expect("conf");
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([]);
    let out = sandbox.run_plugin(&binary, &call("GC", "", "", &path), &gc.to_string());
    assert_eq!(out.code, 0, "{out:?}");

    let now = target.state();
    let added: Vec<_> = now.difference(&baseline).collect();
    let removed: Vec<_> = baseline.difference(&now).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "left after {killed} killed ADDs: added {added:#?}, removed {removed:#?}"
    );
    eprintln!(
        "{name}: {killed} ADDs killed running, {finished} finished first, window {window} us: nothing left"
    );
}

fn host_local_ipam(sandbox_dir: &std::path::Path, subnet: &str) -> Value {
    json!({"type": "host-local", "subnet": subnet, "dataDir": sandbox_dir.join("ipam")})
}

#[test]
fn bridge_with_masquerade_survives_killed_adds() {
    require_root!();
    let dir = tempfile::tempdir().expect("dir");
    crash(
        "bridge",
        json!({"cniVersion": "1.1.0", "name": "crashnet", "type": "bridge", "bridge": "cni-crash",
            "isGateway": true, "ipMasq": true, "ipam": host_local_ipam(dir.path(), "10.50.0.0/16")}),
    );
}

#[test]
fn ptp_with_masquerade_survives_killed_adds() {
    require_root!();
    let dir = tempfile::tempdir().expect("dir");
    crash(
        "ptp",
        json!({"cniVersion": "1.1.0", "name": "crashptp", "type": "ptp", "ipMasq": true,
            "ipam": host_local_ipam(dir.path(), "10.51.0.0/16")}),
    );
}

#[test]
fn host_local_survives_killed_adds() {
    require_root!();
    let dir = tempfile::tempdir().expect("dir");
    crash(
        "host-local",
        json!({"cniVersion": "1.1.0", "name": "crashhl", "type": "host-local",
            "ipam": host_local_ipam(dir.path(), "10.52.0.0/16")}),
    );
}

#[test]
fn portmap_survives_killed_adds() {
    require_root!();
    let dir = tempfile::tempdir().expect("dir");
    crash(
        "portmap",
        json!({"cniVersion": "1.1.0", "name": "crashpm", "type": "portmap", "backend": "iptables",
            "dataDir": dir.path(),
            "runtimeConfig": {"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]},
            "prevResult": {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
                "ips": [{"address": "10.53.0.5/24", "interface": 0}, {"address": "fd53::5/64", "interface": 0}]}}),
    );
}

#[test]
fn firewall_survives_killed_adds() {
    require_root!();
    let dir = tempfile::tempdir().expect("dir");
    crash(
        "firewall",
        json!({"cniVersion": "1.1.0", "name": "crashfw", "type": "firewall", "backend": "iptables",
            "ingressPolicy": "same-bridge", "dataDir": dir.path(),
            "prevResult": {"cniVersion": "1.1.0", "interfaces": [{"name": "crashbr0"}, {"name": "eth0", "sandbox": "/x"}],
                "ips": [{"address": "10.54.0.5/24", "interface": 1}, {"address": "fd54::5/64", "interface": 1}]}}),
    );
}

#[test]
fn tuning_survives_killed_adds() {
    require_root!();
    let dir = tempfile::tempdir().expect("dir");
    crash_in("tuning", |sandbox| {
        let ns = sandbox.container_name();
        sandbox.ip(
            ns,
            &[
                "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
            ],
        );
        json!({"cniVersion": "1.1.0", "name": "crashtune", "type": "tuning", "dataDir": dir.path(),
            "mtu": 1400, "promisc": true, "txQLen": 10,
            "prevResult": {"cniVersion": "1.1.0",
                "interfaces": [{"name": "eth0", "sandbox": sandbox.container_path()}],
                "ips": [{"address": "10.55.0.5/24", "interface": 0}]}})
    });
}
