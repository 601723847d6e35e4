//! tuning against the kernel, in sandboxes: what `ip` shows after ADD and DEL,
//! the MAC sources in order, a read-only `/proc/sys`, and interop with Debian's Go
//! tuning both ways.

mod common;

use std::path::{Path, PathBuf};

use cni_testkit::{Sandbox, require_root};
use common::{Runner, go_plugin, ip_json, plugin};
use serde_json::{Value, json};

fn tuning() -> PathBuf {
    plugin("tuning")
}

/// The container's `eth0`: one end of a veth pair in the container namespace.
fn container_eth0(sandbox: &Sandbox) {
    let ns = sandbox.container_name();
    sandbox.ip(
        ns,
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ],
    );
    sandbox.ip(ns, &["link", "set", "eth0", "address", "02:00:00:00:00:aa"]);
}

fn prev(sandbox: &Sandbox, version: &str) -> Value {
    json!({"cniVersion": version,
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:aa", "sandbox": sandbox.container_path()}],
        "ips": [{"address": "10.79.0.2/24", "interface": 0}]})
}

fn conf(sandbox: &Sandbox, version: &str, extra: Value) -> String {
    let mut conf = json!({"cniVersion": version, "name": "tunenet", "type": "tuning",
        "dataDir": sandbox.state_dir().join("tuning"), "prevResult": prev(sandbox, version)});
    for (k, v) in extra.as_object().expect("object") {
        conf[k] = v.clone();
    }
    conf.to_string()
}

/// (mac, mtu, promisc, allmulti, txqlen) of the container's eth0, as `ip` shows it.
fn eth0(sandbox: &Sandbox) -> (String, u64, bool, bool, u64) {
    let link = ip_json(
        sandbox,
        sandbox.container_name(),
        &["-d", "link", "show", "dev", "eth0"],
    )[0]
    .clone();
    let flags: Vec<String> = serde_json::from_value(link["flags"].clone()).expect("flags");
    (
        link["address"].as_str().expect("address").to_string(),
        link["mtu"].as_u64().expect("mtu"),
        link["promiscuity"].as_u64().unwrap_or(0) > 0,
        flags.iter().any(|f| f == "ALLMULTI"),
        link["txqlen"].as_u64().expect("txqlen"),
    )
}

fn sysctl(sandbox: &Sandbox, name: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", sandbox.container_name(), "cat"])
        .arg(format!("/proc/sys/{name}"))
        .output()
        .expect("cat sysctl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn add_sets_what_ip_shows_and_del_puts_it_back() {
    require_root!();
    let sandbox = Sandbox::new();
    container_eth0(&sandbox);
    let before = eth0(&sandbox);
    let run = Runner::new(&sandbox);
    let c = conf(
        &sandbox,
        "1.1.0",
        json!({"sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1", "net.ipv6.conf.eth0.hop_limit": "12"},
            "mac": "02:00:00:00:00:21", "mtu": 1400, "promisc": true, "allmulti": true, "txQLen": 100}),
    );
    let result = run.add(&tuning(), "ctr1", "eth0", &c);
    assert_eq!(result["interfaces"][0]["mac"], "02:00:00:00:00:21");
    assert_eq!(
        eth0(&sandbox),
        ("02:00:00:00:00:21".into(), 1400, true, true, 100)
    );
    assert_eq!(sysctl(&sandbox, "net/ipv4/conf/eth0/arp_notify"), "1");
    assert_eq!(sysctl(&sandbox, "net/ipv6/conf/eth0/hop_limit"), "12");
    let backup = sandbox.state_dir().join("tuning/ctr1_eth0.json");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&backup).expect("backup")).expect("json");
    assert_eq!(saved["mac"], before.0.as_str());
    assert_eq!(saved["mtu"], before.1);

    let mut with_prev: Value = serde_json::from_str(&c).expect("conf");
    with_prev["prevResult"] = result;
    run.ok(&tuning(), "CHECK", "ctr1", "eth0", &with_prev.to_string());
    with_prev["sysctl"] = json!({"net.ipv4.conf.IFNAME.arp_notify": "0"});
    let (_, msg) = run.fails(
        &tuning(),
        "CHECK",
        "ctr1",
        "eth0",
        "",
        &with_prev.to_string(),
    );
    assert!(msg.contains("arp_notify is 0, current value is 1"), "{msg}");

    run.ok(&tuning(), "DEL", "ctr1", "eth0", &c);
    assert_eq!(eth0(&sandbox), before);
    assert!(!backup.exists());
    run.ok(&tuning(), "DEL", "ctr1", "eth0", &c);
}

#[test]
fn mac_sources_in_upstreams_order() {
    require_root!();
    let sandbox = Sandbox::new();
    container_eth0(&sandbox);
    let run = Runner::new(&sandbox);
    let cases = [
        // (config, CNI_ARGS, runtimeConfig, args.cni, expected)
        (
            Some("02:00:00:00:00:01"),
            None,
            None,
            None,
            "02:00:00:00:00:01",
        ),
        (
            Some("02:00:00:00:00:01"),
            Some("02:00:00:00:00:02"),
            None,
            None,
            "02:00:00:00:00:02",
        ),
        (
            Some("02:00:00:00:00:01"),
            Some("02:00:00:00:00:02"),
            Some("02:00:00:00:00:03"),
            None,
            "02:00:00:00:00:03",
        ),
        (
            None,
            Some("02:00:00:00:00:02"),
            Some("02:00:00:00:00:03"),
            Some("02:00:00:00:00:04"),
            "02:00:00:00:00:04",
        ),
    ];
    for (conf_mac, env_mac, runtime_mac, args_mac, expected) in cases {
        let mut extra = json!({});
        if let Some(mac) = conf_mac {
            extra["mac"] = json!(mac);
        }
        if let Some(mac) = runtime_mac {
            extra["runtimeConfig"] = json!({"mac": mac});
        }
        if let Some(mac) = args_mac {
            extra["args"] = json!({"cni": {"mac": mac}});
        }
        let c = conf(&sandbox, "1.1.0", extra);
        let cni_args = env_mac
            .map(|m| format!("IgnoreUnknown=1;K8S_POD_NAME=p;MAC={m}"))
            .unwrap_or_default();
        let out = run.call(&tuning(), "ADD", "ctr1", "eth0", &cni_args, &c);
        assert_eq!(out.code, 0, "{}", out.stdout);
        assert_eq!(eth0(&sandbox).0, expected);
        run.ok(&tuning(), "DEL", "ctr1", "eth0", &c);
        assert_eq!(eth0(&sandbox).0, "02:00:00:00:00:aa");
    }
}

/// A wrapper that runs the plugin with `/proc/sys` mounted read-only, in a mount
/// namespace of its own (nothing outside it changes), as some runtimes run them.
fn read_only_proc_sys(dir: &Path, binary: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("tuning");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec unshare --mount --propagation private sh -c \
             'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec \"$0\"' {}\n",
            binary.display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

#[test]
fn a_read_only_proc_sys_is_a_clear_error_that_changes_nothing() {
    require_root!();
    let sandbox = Sandbox::new();
    container_eth0(&sandbox);
    let before = eth0(&sandbox);
    let run = Runner::new(&sandbox);
    let wrapper_dir = tempfile::tempdir().expect("dir");
    let wrapper = read_only_proc_sys(wrapper_dir.path(), &tuning());
    let c = conf(
        &sandbox,
        "1.1.0",
        json!({"sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}, "mtu": 1400}),
    );
    let (code, msg) = run.fails(&wrapper, "ADD", "ctr1", "eth0", "", &c);
    assert_eq!(code, 999);
    assert!(msg.contains("read-only"), "{msg}");
    assert_eq!(eth0(&sandbox), before);
    assert_eq!(sysctl(&sandbox, "net/ipv4/conf/eth0/arp_notify"), "0");
    assert!(!sandbox.state_dir().join("tuning/ctr1_eth0.json").exists());
}

#[test]
fn go_tuning_interop_both_ways() {
    require_root!();
    let Some(go) = go_plugin("tuning") else {
        return;
    };
    let sandbox = Sandbox::new();
    container_eth0(&sandbox);
    let before = eth0(&sandbox);
    let run = Runner::new(&sandbox);
    // Go's v1.1.1 knows neither txQLen nor CNI 1.1.0.
    let c = conf(
        &sandbox,
        "1.0.0",
        json!({"mac": "02:00:00:00:00:31", "mtu": 1300, "promisc": true, "allmulti": true}),
    );
    let tuned = ("02:00:00:00:00:31".to_string(), 1300, true, true, before.4);

    // Go's ADD, then our CHECK and DEL (which reads Go's backup).
    let result = run.add(&go, "ctr1", "eth0", &c);
    assert_eq!(eth0(&sandbox), tuned);
    let mut with_prev: Value = serde_json::from_str(&c).expect("conf");
    with_prev["prevResult"] = result;
    run.ok(&tuning(), "CHECK", "ctr1", "eth0", &with_prev.to_string());
    run.ok(&tuning(), "DEL", "ctr1", "eth0", &c);
    assert_eq!(eth0(&sandbox), before);

    // Our ADD, then Go's CHECK and DEL (which reads ours).
    let result = run.add(&tuning(), "ctr2", "eth0", &c);
    assert_eq!(eth0(&sandbox), tuned);
    with_prev["prevResult"] = result;
    run.ok(&go, "CHECK", "ctr2", "eth0", &with_prev.to_string());
    run.ok(&go, "DEL", "ctr2", "eth0", &c);
    assert_eq!(eth0(&sandbox), before);
    assert!(
        std::fs::read_dir(sandbox.state_dir().join("tuning"))
            .expect("dir")
            .next()
            .is_none()
    );
}
