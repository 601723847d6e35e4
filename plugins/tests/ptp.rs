//! ptp against the kernel, in sandboxes.

mod common;

use std::path::PathBuf;

use cni_testkit::{Sandbox, require_root};
use common::{Runner, addresses, go_plugin, iptables_nat, links, plugin, reservations};
use serde_json::{Value, json};

fn ptp() -> PathBuf {
    plugin("ptp")
}

fn conf(sandbox: &Sandbox, ranges: Value, masq: bool) -> String {
    json!({
        "cniVersion": "1.0.0", "name": "ptpnet", "type": "ptp", "ipMasq": masq, "mtu": 1450,
        "ipam": {"type": "host-local", "ranges": ranges, "dataDir": sandbox.state_dir()},
    })
    .to_string()
}

#[test]
fn dual_stack_point_to_point_with_masquerade() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let c = conf(
        &sandbox,
        json!([[{"subnet": "10.5.0.0/24"}], [{"subnet": "fd00:5::/64"}]]),
        true,
    );
    let result = run.add(&ptp(), "ctr-1", "eth0", &c);
    let ifaces = result["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifaces.len(), 2);
    let host_veth = ifaces[0]["name"].as_str().expect("veth").to_string();
    assert_eq!(ifaces[1]["sandbox"], sandbox.container_path());
    assert_eq!(
        result["ips"],
        json!([
            {"address": "10.5.0.2/24", "gateway": "10.5.0.1", "interface": 1},
            {"address": "fd00:5::2/64", "gateway": "fd00:5::1", "interface": 1},
        ])
    );
    let ctr = sandbox.container_name();
    let host = sandbox.host_name();
    assert_eq!(
        addresses(&sandbox, ctr, "eth0"),
        vec!["10.5.0.2/24", "fd00:5::2/64"]
    );
    // Container: no connected route, an on-link route to the gateway, the subnet via it.
    let routes = sandbox.ip(ctr, &["route"]);
    assert!(
        routes.contains("10.5.0.0/24 via 10.5.0.1 dev eth0 src 10.5.0.2"),
        "{routes}"
    );
    assert!(
        routes.contains("10.5.0.1 dev eth0 scope link src 10.5.0.2"),
        "{routes}"
    );
    assert!(!routes.contains("proto kernel"), "{routes}");
    let routes6 = sandbox.ip(ctr, &["-6", "route"]);
    assert!(
        routes6.contains("fd00:5::/64 via fd00:5::1 dev eth0"),
        "{routes6}"
    );
    // Host: the gateway as a host address on the veth, a route to the container.
    let mut host_addrs = addresses(&sandbox, host, &host_veth);
    host_addrs.sort();
    assert_eq!(host_addrs, vec!["10.5.0.1/32", "fd00:5::1/128"]);
    let host_routes = sandbox.ip(host, &["route"]);
    assert!(
        host_routes.contains(&format!("10.5.0.2 dev {host_veth}")),
        "{host_routes}"
    );
    assert!(
        sandbox
            .ip(host, &["-6", "route"])
            .contains(&format!("fd00:5::2 dev {host_veth}"))
    );
    assert_eq!(
        common::ip_json(&sandbox, ctr, &["link", "show", "eth0"])[0]["mtu"],
        1450
    );
    assert!(iptables_nat(&sandbox, false).contains("-s 10.5.0.2/32"));
    assert!(iptables_nat(&sandbox, true).contains("-s fd00:5::2/128"));

    // Traffic both ways: container -> host side and host -> container.
    let ping = sandbox.exec_in_container("ping", &["-c", "1", "-W", "2", "10.5.0.1"]);
    assert!(ping.status.success(), "{ping:?}");
    let back = std::process::Command::new("ip")
        .args([
            "netns", "exec", host, "ping", "-c", "1", "-W", "2", "10.5.0.2",
        ])
        .output()
        .expect("ping");
    assert!(back.status.success(), "{back:?}");

    let mut check: Value = serde_json::from_str(&c).expect("conf");
    check["prevResult"] = result;
    run.ok(&ptp(), "CHECK", "ctr-1", "eth0", &check.to_string());
    run.ok(&ptp(), "DEL", "ctr-1", "eth0", &check.to_string());
    run.ok(&ptp(), "DEL", "ctr-1", "eth0", &check.to_string());
    assert_eq!(links(&sandbox, ctr), vec!["lo"]);
    assert_eq!(links(&sandbox, host), vec!["lo"]);
    assert_eq!(reservations(&sandbox.state_dir().join("ptpnet")), vec![]);
    let nat = iptables_nat(&sandbox, false) + &iptables_nat(&sandbox, true);
    assert!(!nat.contains("CNI-"), "{nat}");
}

#[test]
fn del_after_the_netns_is_gone_and_failed_add_cleanup() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let c = conf(&sandbox, json!([[{"subnet": "10.6.0.0/24"}]]), true);
    run.add(&ptp(), "ctr-1", "eth0", &c);
    let out = sandbox.run_plugin(
        &ptp(),
        &cni_testkit::Call {
            command: "DEL",
            container_id: "ctr-1",
            netns: "/run/netns/rcni-test-gone",
            ifname: "eth0",
            path: &run.path,
            ..Default::default()
        },
        &c,
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    assert_eq!(reservations(&sandbox.state_dir().join("ptpnet")), vec![]);
    assert!(!iptables_nat(&sandbox, false).contains("CNI-"));
    // Clean the veth left in the still-existing container netns.
    run.ok(&ptp(), "DEL", "ctr-1", "eth0", &c);

    // A netns path that is not a network namespace: as upstream, the address is
    // released first, then the netns error is reported.
    run.add(&ptp(), "ctr-3", "eth0", &c);
    let not_a_netns = sandbox.state_dir().join("not-a-netns");
    std::fs::write(&not_a_netns, "").expect("write");
    let out = sandbox.run_plugin(
        &ptp(),
        &cni_testkit::Call {
            command: "DEL",
            container_id: "ctr-3",
            netns: &not_a_netns.display().to_string(),
            ifname: "eth0",
            path: &run.path,
            ..Default::default()
        },
        &c,
    );
    assert_eq!(out.code, 1, "{} {}", out.stdout, out.stderr);
    assert_eq!(reservations(&sandbox.state_dir().join("ptpnet")), vec![]);
    run.ok(&ptp(), "DEL", "ctr-3", "eth0", &c);
    assert!(!iptables_nat(&sandbox, false).contains("CNI-"));

    // An ADD that fails after IPAM (the container already has eth0) releases the
    // address and makes nothing.
    sandbox.ip(
        sandbox.container_name(),
        &["link", "add", "eth0", "type", "bridge"],
    );
    let (code, msg) = run.fails(&ptp(), "ADD", "ctr-2", "eth0", "", &c);
    assert_eq!(code, 999);
    assert!(msg.contains("already exists"), "{msg}");
    assert_eq!(reservations(&sandbox.state_dir().join("ptpnet")), vec![]);
    assert_eq!(links(&sandbox, sandbox.host_name()), vec!["lo"]);
    assert!(!iptables_nat(&sandbox, false).contains("CNI-"));
}

#[test]
fn go_ptp_and_ours_remove_each_others_masquerade() {
    require_root!();
    let (Some(go_ptp), Some(go_host_local)) = (go_plugin("ptp"), go_plugin("host-local")) else {
        return;
    };
    let sandbox = Sandbox::new();
    let ours = Runner::new(&sandbox);
    let go_dir = cni_testkit::plugin_dir_with(&[("ptp", &go_ptp), ("host-local", &go_host_local)]);
    let mut go = Runner::new(&sandbox);
    go.path = go_dir.path().display().to_string();
    let c = conf(&sandbox, json!([[{"subnet": "10.7.0.0/24"}]]), true);
    // One after the other: two point-to-point links to one gateway in the same
    // netns would fight over the on-link gateway route.
    go.add(&go_ptp, "ctr-go", "eth0", &c);
    assert!(iptables_nat(&sandbox, false).contains("CNI-"));
    ours.ok(&ptp(), "DEL", "ctr-go", "eth0", &c);
    assert!(!iptables_nat(&sandbox, false).contains("CNI-"));
    ours.add(&ptp(), "ctr-rs", "eth0", &c);
    assert!(iptables_nat(&sandbox, false).contains("CNI-"));
    go.ok(&go_ptp, "DEL", "ctr-rs", "eth0", &c);
    assert!(!iptables_nat(&sandbox, false).contains("CNI-"));
    assert_eq!(links(&sandbox, sandbox.container_name()), vec!["lo"]);
    assert_eq!(reservations(&sandbox.state_dir().join("ptpnet")), vec![]);
}
