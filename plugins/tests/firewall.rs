//! firewall against the kernel, in sandboxes: upstream's exact iptables rules, the
//! nftables table, the conformance lifecycle after bridge on both backends, traffic
//! that the rules really admit and drop, GC, errors, and interop with Debian's Go
//! firewall both ways.

mod common;

use std::path::{Path, PathBuf};

use cni_testkit::{Sandbox, require_root};
use common::{Runner, chained_conformance_on_kernel, go_plugin, host_cmd, iptables_table, plugin};
use serde_json::{Value, json};

fn firewall() -> PathBuf {
    plugin("firewall")
}

fn prev(sandbox: &Sandbox, version: &str) -> Value {
    json!({"cniVersion": version,
        "interfaces": [{"name": "fwbr0"}, {"name": "eth0", "sandbox": sandbox.container_path()}],
        "ips": [{"address": "10.80.0.2/24", "interface": 1}, {"address": "fd80::2/64", "interface": 1}]})
}

fn conf(sandbox: &Sandbox, version: &str, extra: Value) -> String {
    let mut conf = json!({"cniVersion": version, "name": "fwnet", "type": "firewall",
        "dataDir": sandbox.state_dir().join("firewall"), "prevResult": prev(sandbox, version)});
    for (k, v) in extra.as_object().expect("object") {
        conf[k] = v.clone();
    }
    conf.to_string()
}

/// The `-A` lines of the filter table.
fn rules(sandbox: &Sandbox, v6: bool) -> Vec<String> {
    iptables_table(sandbox, v6, "filter")
        .lines()
        .filter(|l| l.starts_with("-A ") || l.starts_with("-N "))
        .map(str::to_string)
        .collect()
}

#[test]
fn iptables_rules_are_upstreams_and_del_removes_only_the_addresses() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let c = conf(
        &sandbox,
        "1.1.0",
        json!({"backend": "iptables", "ingressPolicy": "isolated", "iptablesAdminChainName": "MY-ADMIN"}),
    );
    let result = run.add(&firewall(), "ctr1", "eth0", &c);
    assert_eq!(result["ips"][0]["address"], "10.80.0.2/24");
    let iso = "-m comment --comment \"CNI firewall plugin rules (ingressPolicy: isolated)\"";
    let expected = |ip: &str| {
        vec![
            "-N CNI-FORWARD".to_string(),
            "-N CNI-ISOLATION-STAGE-1".into(),
            "-N CNI-ISOLATION-STAGE-2".into(),
            "-N MY-ADMIN".into(),
            format!("-A FORWARD {iso} -j CNI-ISOLATION-STAGE-1"),
            "-A FORWARD -m comment --comment \"CNI firewall plugin rules\" -j CNI-FORWARD".into(),
            "-A CNI-FORWARD -m comment --comment \"CNI firewall plugin admin overrides\" -j MY-ADMIN"
                .into(),
            format!("-A CNI-FORWARD -d {ip} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
            format!("-A CNI-FORWARD -s {ip} -j ACCEPT"),
            format!("-A CNI-ISOLATION-STAGE-1 -i fwbr0 -o fwbr0 {iso} -j DROP"),
            format!("-A CNI-ISOLATION-STAGE-1 -i fwbr0 ! -o fwbr0 {iso} -j CNI-ISOLATION-STAGE-2"),
            format!("-A CNI-ISOLATION-STAGE-1 {iso} -j RETURN"),
            format!("-A CNI-ISOLATION-STAGE-2 -o fwbr0 {iso} -j DROP"),
            format!("-A CNI-ISOLATION-STAGE-2 {iso} -j RETURN"),
        ]
    };
    assert_eq!(rules(&sandbox, false), expected("10.80.0.2/32"));
    assert_eq!(rules(&sandbox, true), expected("fd80::2/128"));

    let mut with_prev: Value = serde_json::from_str(&c).expect("conf");
    with_prev["prevResult"] = result;
    run.ok(&firewall(), "CHECK", "ctr1", "eth0", &with_prev.to_string());
    // A repeated ADD adds nothing.
    run.add(&firewall(), "ctr1", "eth0", &c);
    assert_eq!(rules(&sandbox, false), expected("10.80.0.2/32"));

    // DEL without prevResult finds the addresses in its record.
    let mut bare: Value = serde_json::from_str(&c).expect("conf");
    bare.as_object_mut().expect("object").remove("prevResult");
    run.ok(&firewall(), "DEL", "ctr1", "eth0", &bare.to_string());
    let left = rules(&sandbox, false);
    assert!(!left.iter().any(|r| r.contains("10.80.0.2")), "{left:#?}");
    assert_eq!(left.len(), expected("x").len() - 2);
    let (_, msg) = run.fails(
        &firewall(),
        "CHECK",
        "ctr1",
        "eth0",
        "",
        &with_prev.to_string(),
    );
    assert!(msg.contains("not found"), "{msg}");
    run.ok(&firewall(), "DEL", "ctr1", "eth0", &c);
    assert!(
        std::fs::read_dir(sandbox.state_dir().join("firewall/fwnet"))
            .expect("dir")
            .next()
            .is_none()
    );
}

#[test]
fn nftables_backend_writes_its_table_in_one_transaction_and_del_and_gc_remove_rules() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let c = conf(
        &sandbox,
        "1.1.0",
        json!({"backend": "nftables", "ingressPolicy": "same-bridge"}),
    );
    let result = run.add(&firewall(), "ctr1", "eth0", &c);
    let table = host_cmd(
        &sandbox,
        "/usr/sbin/nft",
        &["list", "table", "inet", "cni_firewall"],
    );
    for line in [
        "chain CNI-ADMIN {",
        "type filter hook forward priority filter; policy accept;",
        "jump CNI-ADMIN comment \"CNI firewall plugin admin overrides\"",
        "ip daddr 10.80.0.2 ct state established,related accept comment \"ctr1\"",
        "ip saddr 10.80.0.2 accept comment \"ctr1\"",
        "ip6 daddr fd80::2 ct state established,related accept comment \"ctr1\"",
        "ip6 saddr fd80::2 accept comment \"ctr1\"",
        "type filter hook forward priority filter - 1; policy accept;",
        "iifname \"fwbr0\" oifname != \"fwbr0\" jump isolation-stage-2 comment \"CNI firewall plugin rules (ingressPolicy: same-bridge)\"",
        "oifname \"fwbr0\" drop comment \"CNI firewall plugin rules (ingressPolicy: same-bridge)\"",
    ] {
        assert!(table.contains(line), "{line:?} missing in\n{table}");
    }
    let mut with_prev: Value = serde_json::from_str(&c).expect("conf");
    with_prev["prevResult"] = result;
    run.ok(&firewall(), "CHECK", "ctr1", "eth0", &with_prev.to_string());
    run.ok(&firewall(), "DEL", "ctr1", "eth0", &c);
    let table = host_cmd(
        &sandbox,
        "/usr/sbin/nft",
        &["list", "table", "inet", "cni_firewall"],
    );
    assert!(!table.contains("10.80.0.2"), "{table}");

    // GC: ctr2's rules go, ctr3's (valid) stay.
    run.add(&firewall(), "ctr2", "eth0", &c);
    let mut other = prev(&sandbox, "1.1.0");
    other["ips"] = json!([{"address": "10.80.0.3/24", "interface": 1}]);
    let mut c3: Value = serde_json::from_str(&c).expect("conf");
    c3["prevResult"] = other;
    run.add(&firewall(), "ctr3", "eth0", &c3.to_string());
    let mut gc: Value = serde_json::from_str(&c).expect("conf");
    gc.as_object_mut().expect("object").remove("prevResult");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr3", "ifname": "eth0"}]);
    run.ok(&firewall(), "GC", "", "", &gc.to_string());
    let table = host_cmd(
        &sandbox,
        "/usr/sbin/nft",
        &["list", "table", "inet", "cni_firewall"],
    );
    assert!(!table.contains("10.80.0.2 "), "{table}");
    assert!(table.contains("10.80.0.3 "), "{table}");
}

fn bridge_main(data_dir: &Path) -> Value {
    json!({"type": "bridge", "bridge": "fwconf0", "isGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.84.0.0/24", "dataDir": data_dir}})
}

#[test]
fn conformance_after_bridge_with_iptables() {
    require_root!();
    chained_conformance_on_kernel("firewall", &["0.4.0", "1.0.0", "1.1.0"], |s| {
        let fw = json!({"name": "conffw", "type": "firewall", "backend": "iptables",
            "ingressPolicy": "same-bridge", "dataDir": s.state_dir().join("fw")});
        (Some(bridge_main(s.state_dir())), fw)
    });
}

#[test]
fn conformance_after_bridge_with_nftables() {
    require_root!();
    chained_conformance_on_kernel("firewall", &["0.4.0", "1.0.0", "1.1.0"], |s| {
        let fw = json!({"name": "conffw", "type": "firewall", "backend": "nftables",
            "ingressPolicy": "isolated", "dataDir": s.state_dir().join("fw")});
        (Some(bridge_main(s.state_dir())), fw)
    });
}

fn ping(from: &str, to: &str) -> bool {
    std::process::Command::new("ip")
        .args([
            "netns", "exec", from, "ping", "-c", "1", "-W", "1", "-q", to,
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Two bridge networks with `same-bridge` isolation and a host whose FORWARD policy
/// is DROP, plus an "outside" namespace routed through the host.
fn traffic(backend: &str) {
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let bridge = plugin("bridge");
    let network = |name: &str, br: &str, subnet: &str| {
        json!({"cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": br,
            "isGateway": true, "ipam": {"type": "host-local", "subnet": subnet,
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": sandbox.state_dir()}})
    };
    let fw = |name: &str, prev: &Value| {
        json!({"cniVersion": "1.0.0", "name": name, "type": "firewall", "backend": backend,
            "ingressPolicy": "same-bridge", "dataDir": sandbox.state_dir().join("fw"),
            "prevResult": prev})
        .to_string()
    };
    let a = network("neta", "fwa0", "10.81.0.0/24");
    let b = network("netb", "fwb0", "10.82.0.0/24");
    let attach = |netns: &str, id: &str, net: &Value, name: &str| -> (Value, String) {
        let call = cni_testkit::Call {
            command: "ADD",
            container_id: id,
            netns,
            ifname: "eth0",
            path: &run.path,
            ..Default::default()
        };
        let out = sandbox.run_plugin(&bridge, &call, &net.to_string());
        assert_eq!(out.code, 0, "{}", out.stdout);
        let result: Value = serde_json::from_str(&out.stdout).expect("result");
        let out = sandbox.run_plugin(&firewall(), &call, &fw(name, &result));
        assert_eq!(out.code, 0, "{}", out.stdout);
        let ip = common::first_ip(&result);
        (result, ip)
    };
    let a1_path = sandbox.container_path();
    let a2_path = sandbox.extra_netns();
    let b1_path = sandbox.extra_netns();
    let (a1_result, _) = attach(&a1_path, "a1", &a, "neta");
    let (_, a2) = attach(&a2_path, "a2", &a, "neta");
    let (_, b1) = attach(&b1_path, "b1", &b, "netb");

    let out = common::outside(&sandbox, "fwout", "10.83.0.1/24", "10.83.0.2/24");
    let policy = sandbox.run_in_host(
        Path::new("/usr/sbin/iptables"),
        &["-P", "FORWARD", "DROP"],
        &[],
    );
    assert!(policy.status.success());

    let a1 = sandbox.container_name().to_string();
    // The accept rules open the way through FORWARD's DROP policy.
    assert!(ping(&a1, "10.83.0.2"), "container to outside");
    assert!(ping(&a1, &a2), "same bridge");
    assert!(!ping(&a1, &b1), "another isolated bridge is dropped");
    assert!(
        !ping(&out, &common::first_ip(&a1_result)),
        "new connections from outside"
    );

    // After DEL, nothing lets the container out any more.
    let del = cni_testkit::Call {
        command: "DEL",
        container_id: "a1",
        netns: &a1_path,
        ifname: "eth0",
        path: &run.path,
        ..Default::default()
    };
    let out_del = sandbox.run_plugin(&firewall(), &del, &fw("neta", &a1_result));
    assert_eq!(out_del.code, 0, "{}", out_del.stdout);
    assert!(!ping(&a1, "10.83.0.2"), "DEL closed the way out");
}

#[test]
fn iptables_rules_admit_and_isolation_drops_real_traffic() {
    require_root!();
    traffic("iptables");
}

#[test]
fn config_errors_are_clear() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    for (extra, message) in [
        (
            json!({"ingressPolicy": "closed"}),
            "unknown ingress policy: \"closed\"",
        ),
        (json!({"backend": "ufw"}), "unknown firewall backend"),
        (
            json!({"backend": "firewalld"}),
            "firewalld backend: no system D-Bus",
        ),
        (json!({"prevResult": null}), "missing prevResult"),
        (
            json!({"iptablesAdminChainName": "A B"}),
            "invalid iptablesAdminChainName",
        ),
    ] {
        let (code, msg) = run.fails(
            &firewall(),
            "ADD",
            "ctr1",
            "eth0",
            "",
            &conf(&sandbox, "1.0.0", extra),
        );
        assert_eq!(code, 999);
        assert!(msg.contains(message), "{msg} should say {message}");
    }
    let (code, msg) = run.fails(
        &firewall(),
        "ADD",
        "ctr1",
        "eth0",
        "",
        &conf(&sandbox, "0.3.1", json!({})),
    );
    assert_eq!(code, 1, "{msg}");
    assert!(
        !rules(&sandbox, false)
            .iter()
            .any(|r| r.contains("CNI-FORWARD")),
        "nothing written"
    );
}

#[test]
fn go_firewall_interop_both_ways() {
    require_root!();
    let Some(go) = go_plugin("firewall") else {
        return;
    };
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let c = conf(
        &sandbox,
        "1.0.0",
        json!({"backend": "iptables", "ingressPolicy": "same-bridge"}),
    );
    let mut with_prev: Value = serde_json::from_str(&c).expect("conf");

    // Go's ADD; our CHECK and DEL.
    let result = run.add(&go, "ctr1", "eth0", &c);
    let go_rules = rules(&sandbox, false);
    with_prev["prevResult"] = result;
    run.ok(&firewall(), "CHECK", "ctr1", "eth0", &with_prev.to_string());
    run.ok(&firewall(), "DEL", "ctr1", "eth0", &c);
    assert!(
        !rules(&sandbox, false)
            .iter()
            .any(|r| r.contains("10.80.0.2"))
    );

    // Our ADD writes what Go's did; Go's CHECK and DEL accept it.
    let result = run.add(&firewall(), "ctr2", "eth0", &c);
    assert_eq!(rules(&sandbox, false), go_rules);
    with_prev["prevResult"] = result;
    run.ok(&go, "CHECK", "ctr2", "eth0", &with_prev.to_string());
    run.ok(&go, "DEL", "ctr2", "eth0", &c);
    assert!(
        !rules(&sandbox, false)
            .iter()
            .any(|r| r.contains("10.80.0.2"))
    );
    assert!(!rules(&sandbox, true).iter().any(|r| r.contains("fd80::2")));
}

#[test]
fn iptables_gc_removes_the_rules_of_gone_attachments_but_not_of_a_valid_ones_address() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let c = conf(&sandbox, "1.1.0", json!({"backend": "iptables"}));
    run.add(&firewall(), "gone", "eth0", &c);
    // A valid attachment holds the gone one's IPv4 address now; its other address
    // is its own.
    let mut live_prev = prev(&sandbox, "1.1.0");
    live_prev["ips"] = json!([{"address": "10.80.0.2/24", "interface": 1},
        {"address": "10.80.0.3/24", "interface": 1}]);
    let mut live: Value = serde_json::from_str(&c).expect("conf");
    live["prevResult"] = live_prev;
    run.add(&firewall(), "live", "eth0", &live.to_string());
    let mut gc: Value = serde_json::from_str(&c).expect("conf");
    gc.as_object_mut().expect("object").remove("prevResult");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "live", "ifname": "eth0"}]);
    run.ok(&firewall(), "GC", "", "", &gc.to_string());
    let v4 = rules(&sandbox, false);
    assert!(v4.iter().any(|r| r.contains("10.80.0.2/32")), "{v4:#?}");
    assert!(v4.iter().any(|r| r.contains("10.80.0.3/32")), "{v4:#?}");
    let v6 = rules(&sandbox, true);
    assert!(
        !v6.iter().any(|r| r.contains("fd80::2")),
        "gone's own address: {v6:#?}"
    );
    let records: Vec<_> = std::fs::read_dir(sandbox.state_dir().join("firewall/fwnet"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(records, ["live_eth0"]);
}
