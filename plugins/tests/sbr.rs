//! sbr against the kernel, in sandboxes: replies to a second interface's address
//! leave by that interface once sbr is chained after it (echo replies counted per
//! interface), the
//! rules and tables `ip` shows, a missing netns path that stays missing, and
//! interop with Debian's Go sbr both ways.

mod common;

use std::path::PathBuf;

use cni_testkit::{Sandbox, require_root};
use common::{Runner, go_plugin, ip_json, plugin};
use serde_json::{Value, json};

fn sbr() -> PathBuf {
    plugin("sbr")
}

fn ptp(sandbox: &Sandbox, name: &str, subnet: &str, default_route: bool) -> String {
    let mut ipam = json!({"type": "host-local", "subnet": subnet, "dataDir": sandbox.state_dir()});
    if default_route {
        ipam["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    }
    json!({"cniVersion": "1.0.0", "name": name, "type": "ptp", "ipam": ipam}).to_string()
}

fn conf(name: &str, prev: &Value, extra: Value) -> String {
    let mut conf = json!({"cniVersion": "1.0.0", "name": name, "type": "sbr", "prevResult": prev});
    for (k, v) in extra.as_object().expect("object") {
        conf[k] = v.clone();
    }
    conf.to_string()
}

/// Echo replies the container sent out of `dev`, counted by an iptables rule in
/// the container's namespace (link counters also see neighbour discovery).
fn echo_replies(sandbox: &Sandbox, dev: &str) -> u64 {
    let iptables = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(["netns", "exec", sandbox.container_name(), "iptables"])
            .args(args)
            .output()
            .expect("iptables")
    };
    let rule = ["-o", dev, "-p", "icmp", "--icmp-type", "echo-reply"];
    if !iptables(&[&["-C", "OUTPUT"][..], &rule[..]].concat())
        .status
        .success()
    {
        let out = iptables(&[&["-A", "OUTPUT"][..], &rule[..]].concat());
        assert!(out.status.success(), "{out:?}");
    }
    let listing = iptables(&["-L", "OUTPUT", "-v", "-n", "-x"]);
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == dev))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("counter")
}

fn ping(from: &str, to: &str, count: u32) {
    let _ = std::process::Command::new("ip")
        .args([
            "netns", "exec", from, "ping", "-q", "-i", "0.2", "-W", "1", "-c",
        ])
        .arg(count.to_string())
        .arg(to)
        .output();
}

/// (source, table) of the container's source rules.
fn source_rules(sandbox: &Sandbox) -> Vec<(String, String)> {
    let rules = ip_json(sandbox, sandbox.container_name(), &["rule", "show"]);
    rules
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["src"].as_str().is_some_and(|s| s != "all"))
        .map(|r| {
            (
                r["src"].as_str().unwrap_or_default().to_string(),
                r["table"].to_string().trim_matches('"').to_string(),
            )
        })
        .collect()
}

#[test]
fn replies_leave_by_the_interface_their_address_belongs_to() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    run.add(
        &plugin("ptp"),
        "ctr1",
        "eth0",
        &ptp(&sandbox, "sbra", "10.87.0.0/24", true),
    );
    let second = run.add(
        &plugin("ptp"),
        "ctr1",
        "net1",
        &ptp(&sandbox, "sbrb", "10.88.0.0/24", false),
    );
    let net1_ip = common::first_ip(&second);

    // A client behind the host, on a third network.
    let out = common::outside(&sandbox, "sbrout", "10.89.9.1/24", "10.89.9.2/24");

    // Without sbr the replies follow the default route, out of eth0.
    let before = (
        echo_replies(&sandbox, "eth0"),
        echo_replies(&sandbox, "net1"),
    );
    ping(&out, &net1_ip, 3);
    let after = (
        echo_replies(&sandbox, "eth0"),
        echo_replies(&sandbox, "net1"),
    );
    assert!(
        after.0 - before.0 >= 2 && after.1 == before.1,
        "replies left by eth0: {before:?} {after:?}"
    );

    let c = conf("sbrb", &second, json!({}));
    run.add(&sbr(), "ctr1", "net1", &c);
    assert_eq!(
        source_rules(&sandbox),
        vec![(net1_ip.clone(), "100".to_string())]
    );
    let before = (
        echo_replies(&sandbox, "eth0"),
        echo_replies(&sandbox, "net1"),
    );
    ping(&out, &net1_ip, 3);
    let after = (
        echo_replies(&sandbox, "eth0"),
        echo_replies(&sandbox, "net1"),
    );
    assert!(
        after.1 - before.1 >= 2 && after.0 == before.0,
        "replies leave by net1: eth0 {} -> {}, net1 {} -> {}",
        before.0,
        after.0,
        before.1,
        after.1
    );
    let mut with_prev: Value = serde_json::from_str(&c).expect("conf");
    with_prev["prevResult"] = second;
    run.ok(&sbr(), "CHECK", "ctr1", "net1", &with_prev.to_string());
    run.ok(&sbr(), "DEL", "ctr1", "net1", &c);
    run.ok(&sbr(), "DEL", "ctr1", "net1", &c);
    assert!(source_rules(&sandbox).is_empty());
}

#[test]
fn a_missing_netns_path_is_not_created() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
        "ips": [{"address": "10.90.0.2/24", "interface": 0}]});
    let gone = sandbox.state_dir().join("no-such-netns");
    let call = cni_testkit::Call {
        command: "DEL",
        container_id: "ctr1",
        netns: gone.to_str().expect("path"),
        ifname: "eth0",
        path: &run.path,
        ..Default::default()
    };
    let out = sandbox.run_plugin(&sbr(), &call, &conf("sbrn", &prev, json!({})));
    assert_eq!((out.code, out.stdout.as_str()), (0, ""));
    assert!(!gone.exists(), "upstream creates a file here; we must not");
}

#[test]
fn go_sbr_interop_both_ways() {
    require_root!();
    let Some(go) = go_plugin("sbr") else {
        return;
    };
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let prev = run.add(
        &plugin("ptp"),
        "ctr1",
        "eth0",
        &ptp(&sandbox, "sbrgo", "10.91.0.0/24", true),
    );
    let c = conf("sbrgo", &prev, json!({}));
    let mut with_prev: Value = serde_json::from_str(&c).expect("conf");
    with_prev["prevResult"] = prev.clone();
    let ip = common::first_ip(&prev);

    // Go's ADD; our CHECK and DEL.
    run.add(&go, "ctr1", "eth0", &c);
    assert_eq!(source_rules(&sandbox), vec![(ip.clone(), "100".into())]);
    run.ok(&sbr(), "CHECK", "ctr1", "eth0", &with_prev.to_string());
    run.ok(&sbr(), "DEL", "ctr1", "eth0", &c);
    assert!(source_rules(&sandbox).is_empty());
    // Go moved the routes out of main; put the attachment back as ptp made it.
    run.ok(
        &plugin("ptp"),
        "DEL",
        "ctr1",
        "eth0",
        &ptp(&sandbox, "sbrgo", "10.91.0.0/24", true),
    );
    let prev = run.add(
        &plugin("ptp"),
        "ctr1",
        "eth0",
        &ptp(&sandbox, "sbrgo", "10.91.0.0/24", true),
    );
    let c = conf("sbrgo", &prev, json!({}));

    // Our ADD; Go's DEL removes our rule.
    run.add(&sbr(), "ctr1", "eth0", &c);
    assert_eq!(source_rules(&sandbox).len(), 1);
    let main = ip_json(
        &sandbox,
        sandbox.container_name(),
        &["route", "show", "table", "main"],
    );
    assert_eq!(main.as_array().map(Vec::len), Some(0), "{main}");
    run.ok(&go, "DEL", "ctr1", "eth0", &c);
    assert!(source_rules(&sandbox).is_empty());
}
