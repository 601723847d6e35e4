//! macvlan against the kernel, in sandboxes: the master is a veth end in the
//! sandbox's host namespace (upstream's tests do the same).

mod common;

use std::path::PathBuf;

use cni_testkit::{Sandbox, require_root};
use common::{Runner, addresses, go_plugin, ip_json, links, plugin, reservations};
use serde_json::{Value, json};

fn macvlan() -> PathBuf {
    plugin("macvlan")
}

/// A veth pair in `netns` whose end `name` serves as the master.
fn add_master(sandbox: &Sandbox, netns: &str, name: &str) {
    let peer = format!("{name}p");
    sandbox.ip(
        netns,
        &["link", "add", name, "type", "veth", "peer", "name", &peer],
    );
    sandbox.ip(netns, &["link", "set", name, "up"]);
}

fn conf(sandbox: &Sandbox, extra: Value) -> String {
    let mut conf = json!({
        "cniVersion": "1.1.0", "name": "mvnet", "type": "macvlan", "master": "mvmaster",
        "ipam": {"type": "host-local", "subnet": "10.71.0.0/24", "dataDir": sandbox.state_dir()},
    });
    for (key, value) in extra.as_object().expect("object") {
        conf[key] = value.clone();
    }
    conf.to_string()
}

/// `ip -d link show` of `dev` in `netns` as JSON.
fn details(sandbox: &Sandbox, netns: &str, dev: &str) -> Value {
    ip_json(sandbox, netns, &["-d", "link", "show", "dev", dev])[0].clone()
}

#[test]
fn l3_add_check_del() {
    require_root!();
    let sandbox = Sandbox::new();
    add_master(&sandbox, sandbox.host_name(), "mvmaster");
    let run = Runner::new(&sandbox);
    let c = conf(&sandbox, json!({"mtu": 1400}));
    let result = run.add(&macvlan(), "ctr1", "eth0", &c);

    let link = details(&sandbox, sandbox.container_name(), "eth0");
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "bridge");
    assert_eq!(link["mtu"], 1400);
    assert_eq!(link["address"], result["interfaces"][0]["mac"]);
    assert_eq!(
        addresses(&sandbox, sandbox.container_name(), "eth0"),
        vec!["10.71.0.2/24"]
    );
    assert_eq!(result["interfaces"][0]["name"], "eth0");
    assert_eq!(result["interfaces"][0]["mtu"], 1400);
    assert_eq!(
        result["interfaces"][0]["sandbox"],
        sandbox.container_path().as_str()
    );
    assert_eq!(result["ips"][0]["interface"], 0);
    // Nothing appears in the host namespace, not even briefly named.
    assert_eq!(
        links(&sandbox, sandbox.host_name()),
        vec!["lo", "mvmasterp", "mvmaster"]
    );

    let mut with_prev: Value = serde_json::from_str(&c).expect("conf");
    with_prev["prevResult"] = result;
    run.ok(&macvlan(), "CHECK", "ctr1", "eth0", &with_prev.to_string());
    // CHECK notices a mode that is not the configured one.
    with_prev["mode"] = json!("private");
    let (_, msg) = run.fails(
        &macvlan(),
        "CHECK",
        "ctr1",
        "eth0",
        "",
        &with_prev.to_string(),
    );
    assert!(msg.contains("mode"), "{msg}");

    run.ok(&macvlan(), "DEL", "ctr1", "eth0", &c);
    run.ok(&macvlan(), "DEL", "ctr1", "eth0", &c);
    assert_eq!(links(&sandbox, sandbox.container_name()), vec!["lo"]);
    assert_eq!(reservations(&sandbox.state_dir().join("mvnet")), vec![]);
}

#[test]
fn l2_without_ipam_with_mode_mac_and_bcqueuelen() {
    require_root!();
    let sandbox = Sandbox::new();
    add_master(&sandbox, sandbox.host_name(), "mvmaster");
    let run = Runner::new(&sandbox);
    let c = json!({
        "cniVersion": "1.0.0", "name": "mvl2", "type": "macvlan", "master": "mvmaster",
        "mode": "private", "mac": "02:00:00:00:00:01", "bcqueuelen": 300,
        "runtimeConfig": {"mac": "02:00:00:00:00:42"},
    })
    .to_string();
    let result = run.add(&macvlan(), "ctr1", "net1", &c);
    assert_eq!(result["interfaces"][0]["mac"], "02:00:00:00:00:42");
    assert!(result.get("ips").is_none(), "{result}");
    let link = details(&sandbox, sandbox.container_name(), "net1");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "private");
    assert_eq!(link["linkinfo"]["info_data"]["bcqueuelen"], 300);
    assert_eq!(link["address"], "02:00:00:00:00:42");
    assert!(
        link["flags"]
            .as_array()
            .expect("flags")
            .contains(&json!("UP"))
    );
    assert!(addresses(&sandbox, sandbox.container_name(), "net1").is_empty());
    run.ok(&macvlan(), "DEL", "ctr1", "net1", &c);
    assert_eq!(links(&sandbox, sandbox.container_name()), vec!["lo"]);
}

#[test]
fn master_defaults_to_the_default_routes_interface_or_lives_in_the_container() {
    require_root!();
    let sandbox = Sandbox::new();
    let host = sandbox.host_name();
    add_master(&sandbox, host, "mvmaster");
    let run = Runner::new(&sandbox);
    let without_master = |extra: Value| {
        let mut c: Value = serde_json::from_str(&conf(&sandbox, extra)).expect("conf");
        c.as_object_mut().expect("object").remove("master");
        c.to_string()
    };
    let (code, msg) = run.fails(
        &macvlan(),
        "ADD",
        "ctr1",
        "eth0",
        "",
        &without_master(json!({})),
    );
    assert_eq!(
        (code, msg.as_str()),
        (999, "no default route interface found")
    );

    sandbox.ip(host, &["addr", "add", "10.72.0.1/24", "dev", "mvmaster"]);
    sandbox.ip(host, &["route", "add", "default", "via", "10.72.0.254"]);
    run.add(&macvlan(), "ctr1", "eth0", &without_master(json!({})));
    let master_index = details(&sandbox, host, "mvmaster")["ifindex"].clone();
    assert_eq!(
        details(&sandbox, sandbox.container_name(), "eth0")["link_index"],
        master_index
    );
    run.ok(
        &macvlan(),
        "DEL",
        "ctr1",
        "eth0",
        &without_master(json!({})),
    );

    // linkInContainer: the master is in the container's namespace.
    add_master(&sandbox, sandbox.container_name(), "inmaster");
    let c = conf(
        &sandbox,
        json!({"master": "inmaster", "linkInContainer": true}),
    );
    let result = run.add(&macvlan(), "ctr2", "net1", &c);
    assert_eq!(
        details(&sandbox, sandbox.container_name(), "net1")["link"],
        "inmaster"
    );
    let mut with_prev: Value = serde_json::from_str(&c).expect("conf");
    with_prev["prevResult"] = result;
    run.ok(&macvlan(), "CHECK", "ctr2", "net1", &with_prev.to_string());
    run.ok(&macvlan(), "DEL", "ctr2", "net1", &c);
    assert_eq!(
        links(&sandbox, sandbox.container_name()),
        vec!["lo", "inmasterp", "inmaster"]
    );
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_nothing() {
    require_root!();
    let sandbox = Sandbox::new();
    add_master(&sandbox, sandbox.host_name(), "mvmaster");
    let run = Runner::new(&sandbox);
    let cases = [
        (
            json!({"master": "nosuch0"}),
            "failed to lookup master \"nosuch0\"",
        ),
        (json!({"mode": "foo"}), "unknown macvlan mode: \"foo\""),
        (
            json!({"mtu": 9000}),
            "invalid MTU 9000, must be [0, master MTU(1500)]",
        ),
        (json!({"mtu": -1}), "invalid MTU -1"),
        (json!({"mac": "zz:00"}), "invalid args zz:00 for MAC addr"),
        (
            json!({"mode": 5}),
            "invalid type: integer `5`, expected a string",
        ),
        (
            json!({"ipam": {"type": "host-local", "subnet": "10.71.0.0/24", "dataDir": sandbox.state_dir(), "rangeStart": "10.99.0.1"}}),
            "10.99.0.1",
        ),
    ];
    for (extra, expected) in cases {
        let (code, msg) = run.fails(
            &macvlan(),
            "ADD",
            "ctr1",
            "eth0",
            "",
            &conf(&sandbox, extra.clone()),
        );
        assert!(
            msg.contains(expected),
            "{extra}: {msg:?} should say {expected:?}"
        );
        assert!([999, 6].contains(&code), "{extra}: code {code}");
        assert_eq!(
            links(&sandbox, sandbox.container_name()),
            vec!["lo"],
            "{extra}"
        );
        assert_eq!(
            reservations(&sandbox.state_dir().join("mvnet")),
            vec![],
            "{extra}"
        );
    }
    // The name is taken in the container: refused, and the existing link stays.
    sandbox.ip(
        sandbox.container_name(),
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ],
    );
    let (_, msg) = run.fails(
        &macvlan(),
        "ADD",
        "ctr1",
        "eth0",
        "",
        &conf(&sandbox, json!({})),
    );
    assert!(msg.contains("failed to create macvlan"), "{msg}");
    assert_eq!(reservations(&sandbox.state_dir().join("mvnet")), vec![]);
    assert_eq!(
        links(&sandbox, sandbox.container_name()),
        vec!["lo", "eth0p", "eth0"]
    );
}

#[test]
fn go_macvlan_and_ours_delete_each_others_attachments() {
    require_root!();
    let (Some(go_macvlan), Some(go_host_local)) = (go_plugin("macvlan"), go_plugin("host-local"))
    else {
        return;
    };
    let sandbox = Sandbox::new();
    add_master(&sandbox, sandbox.host_name(), "mvmaster");
    let ours = Runner::new(&sandbox);
    let go_dir =
        cni_testkit::plugin_dir_with(&[("macvlan", &go_macvlan), ("host-local", &go_host_local)]);
    let mut go = Runner::new(&sandbox);
    go.path = go_dir.path().display().to_string();
    // Go v1.1.1 speaks up to 1.0.0.
    let mut c: Value = serde_json::from_str(&conf(&sandbox, json!({}))).expect("conf");
    c["cniVersion"] = json!("1.0.0");
    let c = c.to_string();

    let theirs = go.add(&go_macvlan, "ctr-go", "eth0", &c);
    let mine = ours.add(&macvlan(), "ctr-rs", "eth1", &c);
    // The same result shape: one interface in the sandbox, its address on it.
    for (result, ifname) in [(&theirs, "eth0"), (&mine, "eth1")] {
        assert_eq!(result["interfaces"][0]["name"], ifname);
        assert_eq!(
            result["interfaces"][0]["sandbox"],
            sandbox.container_path().as_str()
        );
        assert_eq!(result["ips"][0]["interface"], 0);
        let kind = details(&sandbox, sandbox.container_name(), ifname);
        assert_eq!(kind["linkinfo"]["info_data"]["mode"], "bridge");
    }
    ours.ok(&macvlan(), "DEL", "ctr-go", "eth0", &c);
    go.ok(&go_macvlan, "DEL", "ctr-rs", "eth1", &c);
    assert_eq!(links(&sandbox, sandbox.container_name()), vec!["lo"]);
    assert_eq!(reservations(&sandbox.state_dir().join("mvnet")), vec![]);
}
