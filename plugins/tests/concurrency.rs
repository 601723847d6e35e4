//! Concurrency: many plugin processes at once on one range, a range exhausted under
//! load, and ADD racing DEL for the same attachment.

mod common;

use std::collections::BTreeSet;

use cni_testkit::conformance::{SandboxTarget, Target};
use cni_testkit::{Sandbox, require_root};
use common::{call, error_of, plugin, plugin_dir, reservations};
use serde_json::{Value, json};

fn host_local_conf(data: &std::path::Path, subnet: &str, end: Option<&str>) -> String {
    let mut ipam = json!({"type": "host-local", "subnet": subnet, "dataDir": data});
    if let Some(end) = end {
        ipam["rangeEnd"] = json!(end);
    }
    json!({"cniVersion": "1.1.0", "name": "par", "type": "host-local", "ipam": ipam}).to_string()
}

/// Runs `command` for containers `c0..cN` at once (each its own process) and returns
/// (id, exit code, stdout).
fn all_at_once(
    sandbox: &Sandbox,
    name: &str,
    command: &'static str,
    n: usize,
    conf: &str,
) -> Vec<(String, i32, String)> {
    let binary = plugin(name);
    let path = plugin_dir().display().to_string();
    let netns = sandbox.container_path();
    std::thread::scope(|scope| {
        let jobs: Vec<_> = (0..n)
            .map(|i| {
                let (binary, path, netns) = (&binary, &path, &netns);
                scope.spawn(move || {
                    let id = format!("c{i}");
                    let out = sandbox.run_plugin(binary, &call(command, &id, netns, path), conf);
                    (id, out.code, out.stdout)
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().expect("thread"))
            .collect()
    })
}

#[test]
fn three_hundred_parallel_adds_on_one_range_never_share_an_address() {
    require_root!();
    let sandbox = Sandbox::new();
    let data = sandbox.state_dir().join("hl");
    let conf = host_local_conf(&data, "10.60.0.0/16", None);
    let results = all_at_once(&sandbox, "host-local", "ADD", 300, &conf);
    let mut addresses = BTreeSet::new();
    for (id, code, out) in &results {
        assert_eq!(*code, 0, "{id}: {out}");
        let result: Value = serde_json::from_str(out).expect("result");
        let address = result["ips"][0]["address"]
            .as_str()
            .expect("address")
            .to_string();
        assert!(
            addresses.insert(address.clone()),
            "{address} handed out twice"
        );
    }
    let files = reservations(&data.join("par"));
    assert_eq!(files.len(), 300);
    let owners: BTreeSet<&str> = files.iter().map(|(_, owner)| owner.as_str()).collect();
    assert_eq!(owners.len(), 300, "one file per attachment");
    for (id, code, out) in all_at_once(&sandbox, "host-local", "DEL", 300, &conf) {
        assert_eq!((code, out.as_str()), (0, ""), "{id}");
    }
    assert!(reservations(&data.join("par")).is_empty());
}

#[test]
fn a_range_exhausted_under_load_gives_exactly_its_free_addresses() {
    require_root!();
    let sandbox = Sandbox::new();
    let data = sandbox.state_dir().join("hl");
    // 10.61.0.2 .. 10.61.0.41: 40 addresses (the gateway .1 is not handed out).
    let conf = host_local_conf(&data, "10.61.0.0/24", Some("10.61.0.41"));
    let results = all_at_once(&sandbox, "host-local", "ADD", 70, &conf);
    let ok = results.iter().filter(|(_, code, _)| *code == 0).count();
    assert_eq!(ok, 40, "exactly the free addresses");
    for (id, code, out) in results.iter().filter(|(_, code, _)| *code != 0) {
        assert_eq!(*code, 1, "{id}");
        let (code, msg, _) = error_of(out);
        assert_eq!(code, 999);
        assert!(msg.contains("no IP addresses available"), "{id}: {msg}");
    }
    let dir = data.join("par");
    assert_eq!(reservations(&dir).len(), 40);
    let stray: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with('.')
                || n.parse::<std::net::IpAddr>().is_err()
                    && n != "lock"
                    && !n.starts_with("last_reserved_ip.")
        })
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    for (id, code, _) in all_at_once(&sandbox, "host-local", "DEL", 70, &conf) {
        assert_eq!(code, 0, "{id}");
    }
    assert!(reservations(&dir).is_empty());
}

#[test]
fn add_racing_del_for_the_same_attachment_ends_clean() {
    require_root!();
    let sandbox = Sandbox::new();
    let data = sandbox.state_dir().join("ipam");
    let conf =
        json!({"cniVersion": "1.1.0", "name": "race", "type": "bridge", "bridge": "cni-race",
        "isGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "subnet": "10.62.0.0/24", "dataDir": data}})
        .to_string();
    let binary = plugin("bridge");
    let path = plugin_dir().display().to_string();
    let netns = sandbox.container_path();
    let target = SandboxTarget {
        sandbox: &sandbox,
        binary: &binary,
        path: path.clone(),
    };
    // What a network keeps after one clean attachment (the bridge, its address).
    let out = sandbox.run_plugin(&binary, &call("ADD", "racer", &netns, &path), &conf);
    assert_eq!(out.code, 0, "{out:?}");
    let out = sandbox.run_plugin(&binary, &call("DEL", "racer", &netns, &path), &conf);
    assert_eq!(out.code, 0, "{out:?}");
    let baseline = target.state();
    for round in 0..30 {
        let (add, del) = std::thread::scope(|scope| {
            let add = scope
                .spawn(|| sandbox.run_plugin(&binary, &call("ADD", "racer", &netns, &path), &conf));
            let del = scope
                .spawn(|| sandbox.run_plugin(&binary, &call("DEL", "racer", &netns, &path), &conf));
            (add.join().expect("add"), del.join().expect("del"))
        });
        // Either order is legal; each answer is clean.
        assert!(
            add.code == 0 || (add.code == 1 && error_of(&add.stdout).0 > 0),
            "round {round}: {add:?}"
        );
        assert_eq!(
            (del.code, del.stdout.as_str()),
            (0, ""),
            "round {round}: {del:?}"
        );
        let out = sandbox.run_plugin(&binary, &call("DEL", "racer", &netns, &path), &conf);
        assert_eq!(out.code, 0, "round {round}: {out:?}");
        let now = target.state();
        assert_eq!(
            now,
            baseline,
            "round {round} left {:#?}",
            now.difference(&baseline).collect::<Vec<_>>()
        );
    }
}
