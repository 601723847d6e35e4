//! host-device against the kernel, in sandboxes: the "device" is a veth end in the
//! sandbox's host namespace (this machine has no spare NIC, and no dummy module).

mod common;

use std::path::PathBuf;

use cni_testkit::{Sandbox, require_root};
use common::{Runner, addresses, go_plugin, ip_json, links, plugin, reservations};
use serde_json::{Value, json};

fn host_device() -> PathBuf {
    plugin("host-device")
}

fn add_device(sandbox: &Sandbox, name: &str) {
    let peer = format!("{name}p");
    sandbox.ip(
        sandbox.host_name(),
        &["link", "add", name, "type", "veth", "peer", "name", &peer],
    );
}

fn conf(sandbox: &Sandbox, extra: Value) -> String {
    let mut conf = json!({
        "cniVersion": "1.0.0", "name": "hdnet", "type": "host-device", "device": "hd0",
        "dataDir": sandbox.state_dir().join("hd"),
        "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": sandbox.state_dir()},
    });
    for (key, value) in extra.as_object().expect("object") {
        conf[key] = value.clone();
    }
    conf.to_string()
}

fn alias(sandbox: &Sandbox, netns: &str, dev: &str) -> Value {
    ip_json(sandbox, netns, &["link", "show", "dev", dev])[0]["ifalias"].clone()
}

#[test]
fn moves_in_renamed_with_the_alias_and_back_on_del() {
    require_root!();
    let sandbox = Sandbox::new();
    add_device(&sandbox, "hd0");
    let (host, ctr) = (sandbox.host_name(), sandbox.container_name());
    let run = Runner::new(&sandbox);
    let c = conf(&sandbox, json!({}));
    let result = run.add(&host_device(), "ctr1", "net1", &c);
    assert_eq!(links(&sandbox, host), vec!["lo", "hd0p"]);
    assert_eq!(links(&sandbox, ctr), vec!["lo", "net1"]);
    assert_eq!(alias(&sandbox, ctr, "net1"), "hd0");
    assert_eq!(addresses(&sandbox, ctr, "net1"), vec!["10.77.0.2/24"]);
    assert_eq!(result["interfaces"][0]["name"], "net1");

    let mut with_prev: Value = serde_json::from_str(&c).expect("conf");
    with_prev["prevResult"] = result;
    run.ok(
        &host_device(),
        "CHECK",
        "ctr1",
        "net1",
        &with_prev.to_string(),
    );
    run.ok(&host_device(), "DEL", "ctr1", "net1", &c);
    assert_eq!(links(&sandbox, host), vec!["lo", "hd0p", "hd0"]);
    assert_eq!(alias(&sandbox, host, "hd0"), Value::Null, "alias cleared");
    assert_eq!(links(&sandbox, ctr), vec!["lo"]);
    run.ok(&host_device(), "DEL", "ctr1", "net1", &c);
    assert_eq!(reservations(&sandbox.state_dir().join("hdnet")), vec![]);
}

#[test]
fn del_finds_a_device_renamed_inside_the_container() {
    require_root!();
    let sandbox = Sandbox::new();
    add_device(&sandbox, "hd0");
    let ctr = sandbox.container_name();
    let run = Runner::new(&sandbox);
    let c = conf(&sandbox, json!({}));
    run.add(&host_device(), "ctr1", "net1", &c);
    sandbox.ip(ctr, &["link", "set", "net1", "down"]);
    sandbox.ip(ctr, &["link", "set", "net1", "name", "renamed0"]);
    run.ok(&host_device(), "DEL", "ctr1", "net1", &c);
    assert_eq!(
        links(&sandbox, sandbox.host_name()),
        vec!["lo", "hd0p", "hd0"]
    );
    assert_eq!(links(&sandbox, ctr), vec!["lo"]);
}

#[test]
fn found_by_hwaddr_and_l2_without_ipam() {
    require_root!();
    let sandbox = Sandbox::new();
    add_device(&sandbox, "hd0");
    sandbox.ip(
        sandbox.host_name(),
        &["link", "set", "hd0", "address", "02:00:00:00:00:77"],
    );
    let run = Runner::new(&sandbox);
    let c = json!({"cniVersion": "1.0.0", "name": "hdl2", "type": "host-device",
        "hwaddr": "02:00:00:00:00:77", "dataDir": sandbox.state_dir().join("hd")})
    .to_string();
    let result = run.add(&host_device(), "ctr1", "net1", &c);
    assert_eq!(result["interfaces"][0]["mac"], "02:00:00:00:00:77");
    assert!(result.get("ips").is_none(), "{result}");
    run.ok(&host_device(), "DEL", "ctr1", "net1", &c);
    assert_eq!(
        links(&sandbox, sandbox.host_name()),
        vec!["lo", "hd0p", "hd0"]
    );
}

#[test]
fn bad_input_and_a_failed_add_leave_the_device_on_the_host() {
    require_root!();
    let sandbox = Sandbox::new();
    add_device(&sandbox, "hd0");
    sandbox.ip(sandbox.host_name(), &["link", "set", "hd0", "up"]);
    let run = Runner::new(&sandbox);
    let bare = |extra: Value| {
        let mut c: Value = serde_json::from_str(&conf(&sandbox, extra)).expect("conf");
        c.as_object_mut().expect("object").remove("device");
        c.to_string()
    };
    let cases = [
        (
            bare(json!({})),
            "specify either \"device\", \"hwaddr\", \"kernelpath\" or \"pciBusID\"",
        ),
        (conf(&sandbox, json!({"device": "nosuch0"})), "nosuch0"),
        (
            bare(json!({"kernelpath": "/tmp/x"})),
            "must start with /sys/devices/",
        ),
        (
            bare(json!({"runtimeConfig": {"deviceID": "0000:ff:1f.7"}})),
            "runtime config DeviceID 0000:ff:1f.7 not found",
        ),
        (bare(json!({"hwaddr": "zz"})), "failed to parse MAC address"),
        // IPAM fails after the move: the device goes back, up as it was.
        (
            conf(
                &sandbox,
                json!({"ipam": {"type": "host-local", "subnet": "10.77.0.0/24",
                "rangeStart": "10.99.0.1", "dataDir": sandbox.state_dir()}}),
            ),
            "10.99.0.1",
        ),
    ];
    for (c, expected) in cases {
        let (_, msg) = run.fails(&host_device(), "ADD", "ctr1", "net1", "", &c);
        assert!(
            msg.contains(expected),
            "{c}: {msg:?} should say {expected:?}"
        );
        assert_eq!(
            links(&sandbox, sandbox.host_name()),
            vec!["lo", "hd0p", "hd0"],
            "{c}"
        );
        assert_eq!(links(&sandbox, sandbox.container_name()), vec!["lo"], "{c}");
    }
    let flags = ip_json(
        &sandbox,
        sandbox.host_name(),
        &["link", "show", "dev", "hd0"],
    )[0]["flags"]
        .clone();
    assert!(
        flags.as_array().expect("flags").contains(&json!("UP")),
        "{flags}"
    );
}

#[test]
fn go_host_device_and_ours_move_each_others_devices_back() {
    require_root!();
    let (Some(go_hd), Some(go_host_local)) = (go_plugin("host-device"), go_plugin("host-local"))
    else {
        return;
    };
    let sandbox = Sandbox::new();
    add_device(&sandbox, "hd0");
    let ours = Runner::new(&sandbox);
    let go_dir =
        cni_testkit::plugin_dir_with(&[("host-device", &go_hd), ("host-local", &go_host_local)]);
    let mut go = Runner::new(&sandbox);
    go.path = go_dir.path().display().to_string();
    let c = conf(&sandbox, json!({}));
    let theirs = go.add(&go_hd, "ctr1", "net1", &c);
    assert_eq!(alias(&sandbox, sandbox.container_name(), "net1"), "hd0");
    ours.ok(&host_device(), "DEL", "ctr1", "net1", &c);
    assert_eq!(
        links(&sandbox, sandbox.host_name()),
        vec!["lo", "hd0p", "hd0"]
    );

    let mine = ours.add(&host_device(), "ctr1", "net1", &c);
    assert_eq!(
        mine["interfaces"][0]["name"],
        theirs["interfaces"][0]["name"]
    );
    assert_eq!(
        mine["interfaces"][0]["sandbox"],
        theirs["interfaces"][0]["sandbox"]
    );
    assert_eq!(mine["ips"][0]["interface"], theirs["ips"][0]["interface"]);
    go.ok(&go_hd, "DEL", "ctr1", "net1", &c);
    assert_eq!(
        links(&sandbox, sandbox.host_name()),
        vec!["lo", "hd0p", "hd0"]
    );
    assert_eq!(links(&sandbox, sandbox.container_name()), vec!["lo"]);
    assert_eq!(reservations(&sandbox.state_dir().join("hdnet")), vec![]);
}

#[test]
fn del_with_the_netns_gone_releases_the_address() {
    require_root!();
    let sandbox = Sandbox::new();
    add_device(&sandbox, "hd0");
    let run = Runner::new(&sandbox);
    let c = conf(&sandbox, json!({}));
    let gone = sandbox.extra_netns();
    let call = |command: &str| {
        let call = cni_testkit::Call {
            command,
            container_id: "ctr1",
            netns: &gone,
            ifname: "net1",
            path: &run.path,
            ..Default::default()
        };
        sandbox.run_plugin(&host_device(), &call, &c)
    };
    assert_eq!(call("ADD").code, 0);
    assert_eq!(reservations(&sandbox.state_dir().join("hdnet")).len(), 1);
    let name = gone.rsplit('/').next().expect("name").to_string();
    std::process::Command::new("ip")
        .args(["netns", "del", &name])
        .status()
        .expect("ip netns del");
    let out = call("DEL");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    assert_eq!(reservations(&sandbox.state_dir().join("hdnet")), vec![]);
}

#[test]
fn del_restores_the_hosts_mtu_and_state_and_gc_drops_stale_records() {
    require_root!();
    let sandbox = Sandbox::new();
    add_device(&sandbox, "hd0");
    let (host, ctr) = (sandbox.host_name(), sandbox.container_name());
    sandbox.ip(host, &["link", "set", "hd0", "mtu", "1400", "up"]);
    let run = Runner::new(&sandbox);
    let c = conf(&sandbox, json!({}));
    run.add(&host_device(), "ctr1", "net1", &c);
    let record = sandbox.state_dir().join("hd/hdnet/ctr1/net1");
    assert!(record.is_file());
    // Something in the container changed it.
    sandbox.ip(ctr, &["link", "set", "net1", "mtu", "1300", "down"]);
    run.ok(&host_device(), "DEL", "ctr1", "net1", &c);
    let back = &ip_json(&sandbox, host, &["link", "show", "dev", "hd0"])[0];
    assert_eq!(back["mtu"], 1400);
    assert!(
        back["flags"]
            .as_array()
            .expect("flags")
            .contains(&json!("UP")),
        "{back}"
    );
    assert!(!record.exists());

    // GC forgets the records of attachments that are not valid any more.
    run.add(&host_device(), "ctr2", "net1", &c);
    let stale = sandbox.state_dir().join("hd/hdnet/ctr2/net1");
    assert!(stale.is_file());
    let mut gc: Value = serde_json::from_str(&c).expect("conf");
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr9", "ifname": "eth0"}]);
    run.ok(&host_device(), "GC", "", "", &gc.to_string());
    assert!(!stale.exists());
    assert_eq!(reservations(&sandbox.state_dir().join("hdnet")), vec![]);
    run.ok(&host_device(), "DEL", "ctr2", "net1", &c);
    assert_eq!(links(&sandbox, host), vec!["lo", "hd0p", "hd0"]);
}
