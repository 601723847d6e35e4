//! tap against the kernel, in sandboxes.

mod common;

use std::path::PathBuf;

use cni_testkit::{Sandbox, require_root};
use common::{Runner, addresses, ip_json, links, plugin, reservations};
use serde_json::{Value, json};

fn tap() -> PathBuf {
    plugin("tap")
}

fn conf(sandbox: &Sandbox, extra: Value) -> String {
    let mut conf = json!({
        "cniVersion": "1.1.0", "name": "tapnet", "type": "tap",
        "ipam": {"type": "host-local", "subnet": "10.76.0.0/24", "dataDir": sandbox.state_dir()},
    });
    for (key, value) in extra.as_object().expect("object") {
        conf[key] = value.clone();
    }
    conf.to_string()
}

fn details(sandbox: &Sandbox, dev: &str) -> Value {
    ip_json(
        sandbox,
        sandbox.container_name(),
        &["-d", "link", "show", "dev", dev],
    )[0]
    .clone()
}

#[test]
fn tap_with_ipam_owner_queues_mac_mtu_and_a_bridge_in_the_container() {
    require_root!();
    let sandbox = Sandbox::new();
    let ctr = sandbox.container_name();
    sandbox.ip(ctr, &["link", "add", "br0", "type", "bridge"]);
    let run = Runner::new(&sandbox);
    let c = conf(
        &sandbox,
        // Without SELinux on the host the context is ignored, as upstream.
        json!({"multiQueue": true, "owner": 4242, "group": 4243, "mtu": 1300,
            "mac": "02:00:00:00:00:07", "bridge": "br0",
            "selinuxContext": "system_u:system_r:container_t:s0"}),
    );
    let result = run.add(&tap(), "ctr1", "tap0", &c);
    let link = details(&sandbox, "tap0");
    assert_eq!(link["linkinfo"]["info_kind"], "tun");
    let info = &link["linkinfo"]["info_data"];
    assert_eq!(info["type"], "tap");
    assert_eq!(info["user"], 4242, "{info}");
    assert_eq!(info["group"], 4243, "{info}");
    assert_eq!(info["multi_queue"], true, "{info}");
    assert_eq!(info["vnet_hdr"], true, "{info}");
    assert_eq!(info["persist"], true, "{info}");
    assert_eq!(link["mtu"], 1300);
    assert_eq!(link["address"], "02:00:00:00:00:07");
    assert_eq!(link["master"], "br0");
    assert_eq!(addresses(&sandbox, ctr, "tap0"), vec!["10.76.0.2/24"]);
    assert_eq!(result["interfaces"][0]["name"], "tap0");
    assert_eq!(result["interfaces"][0]["mtu"], 1300);

    let mut with_prev: Value = serde_json::from_str(&c).expect("conf");
    with_prev["prevResult"] = result;
    run.ok(&tap(), "CHECK", "ctr1", "tap0", &with_prev.to_string());
    run.ok(&tap(), "DEL", "ctr1", "tap0", &c);
    run.ok(&tap(), "DEL", "ctr1", "tap0", &c);
    assert_eq!(links(&sandbox, ctr), vec!["lo", "br0"]);
    assert_eq!(reservations(&sandbox.state_dir().join("tapnet")), vec![]);
}

#[test]
fn l2_tap_without_ipam() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let c = json!({"cniVersion": "1.0.0", "name": "tapl2", "type": "tap"}).to_string();
    let result = run.add(&tap(), "ctr1", "tap0", &c);
    assert!(result.get("ips").is_none(), "{result}");
    let link = details(&sandbox, "tap0");
    assert!(
        link["flags"]
            .as_array()
            .expect("flags")
            .contains(&json!("UP"))
    );
    run.ok(&tap(), "DEL", "ctr1", "tap0", &c);
    assert_eq!(links(&sandbox, sandbox.container_name()), vec!["lo"]);
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_nothing() {
    require_root!();
    let sandbox = Sandbox::new();
    let ctr = sandbox.container_name();
    sandbox.ip(
        ctr,
        &[
            "link", "add", "notbr", "type", "veth", "peer", "name", "notbrp",
        ],
    );
    let run = Runner::new(&sandbox);
    let cases = [
        (
            json!({"bridge": "nosuch"}),
            "failed to find bridge \"nosuch\"",
        ),
        (json!({"bridge": "notbr"}), "\"notbr\" is not a bridge"),
        (json!({"mac": "xx"}), "invalid args xx for MAC addr"),
        (json!({"mtu": -1}), "invalid MTU -1"),
        (json!({"owner": -4}), "invalid value"),
    ];
    for (extra, expected) in cases {
        let (_, msg) = run.fails(
            &tap(),
            "ADD",
            "ctr1",
            "tap0",
            "",
            &conf(&sandbox, extra.clone()),
        );
        assert!(
            msg.contains(expected),
            "{extra}: {msg:?} should say {expected:?}"
        );
        assert_eq!(
            links(&sandbox, ctr),
            vec!["lo", "notbrp", "notbr"],
            "{extra}"
        );
        assert_eq!(
            reservations(&sandbox.state_dir().join("tapnet")),
            vec![],
            "{extra}"
        );
    }
    // An existing name is refused; the device there stays.
    let (_, msg) = run.fails(
        &tap(),
        "ADD",
        "ctr1",
        "notbr",
        "",
        &conf(&sandbox, json!({})),
    );
    assert!(msg.contains("failed to create tap"), "{msg}");
    assert_eq!(links(&sandbox, ctr), vec!["lo", "notbrp", "notbr"]);
}
