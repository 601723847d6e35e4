//! host-local and static, run as binaries from a sandbox's host netns; the state is
//! read back from the files.

mod common;

use std::path::{Path, PathBuf};

use cni_testkit::{Sandbox, require_root};
use common::{Runner, go_plugin, plugin, reservations};
use serde_json::{Value, json};

fn host_local() -> PathBuf {
    plugin("host-local")
}

fn conf(data_dir: &Path, version: &str, ipam: Value) -> String {
    let mut ipam_obj = json!({"type": "host-local", "dataDir": data_dir});
    if let (Value::Object(base), Value::Object(extra)) = (&mut ipam_obj, ipam) {
        base.extend(extra);
    }
    json!({"cniVersion": version, "name": "net1", "type": "bridge", "ipam": ipam_obj}).to_string()
}

fn address(result: &Value, i: usize) -> String {
    result["ips"][i]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn files_round_robin_gateway_skip_and_exhaustion() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let data = sandbox.state_dir().to_path_buf();
    let dir = data.join("net1");
    // 10.1.2.0/29 from .1 (the gateway) to .4: three addresses to hand out.
    let c = conf(
        &data,
        "1.1.0",
        json!({"subnet": "10.1.2.0/29", "rangeEnd": "10.1.2.4", "routes": [{"dst": "10.9.0.0/16"}]}),
    );
    let r = run.add(&host_local(), "a", "eth0", &c);
    assert_eq!(
        r,
        json!({"cniVersion": "1.1.0", "ips": [{"address": "10.1.2.2/29", "gateway": "10.1.2.1"}],
               "routes": [{"dst": "10.9.0.0/16"}]})
    );
    assert_eq!(
        std::fs::read(dir.join("10.1.2.2")).expect("file"),
        b"a\r\neth0"
    );
    assert_eq!(
        std::fs::read(dir.join("last_reserved_ip.0")).expect("last"),
        b"10.1.2.2"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(dir.join(p))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        (mode("10.1.2.2"), mode("last_reserved_ip.0")),
        (0o600, 0o600)
    );
    assert!(dir.join("lock").exists());

    // Round robin survives a release: the next ADD takes .3, not .2 again.
    run.ok(&host_local(), "DEL", "a", "eth0", &c);
    assert_eq!(
        address(&run.add(&host_local(), "b", "eth0", &c), 0),
        "10.1.2.3/29"
    );
    assert_eq!(
        address(&run.add(&host_local(), "c", "eth0", &c), 0),
        "10.1.2.4/29"
    );
    // Wraps to the start, skipping the gateway .1.
    assert_eq!(
        address(&run.add(&host_local(), "d", "eth0", &c), 0),
        "10.1.2.2/29"
    );
    let (code, msg) = run.fails(&host_local(), "ADD", "e", "eth0", "", &c);
    assert_eq!(
        (code, msg.as_str()),
        (
            999,
            "failed to allocate for range 0: no IP addresses available in range set: 10.1.2.1-10.1.2.4"
        )
    );
    // STATUS (beyond upstream): code 50 once the set is exhausted.
    let (code, msg) = run.fails(&host_local(), "STATUS", "", "", "", &c);
    assert_eq!(
        (code, msg.as_str()),
        (
            50,
            "no IP addresses available in range set: 10.1.2.1-10.1.2.4"
        )
    );
    // Same attachment twice: upstream's duplicate error.
    let (_, msg) = run.fails(&host_local(), "ADD", "b", "eth0", "", &c);
    assert_eq!(
        msg,
        "failed to allocate for range 0: 10.1.2.3 has been allocated to b, duplicate allocation is not allowed"
    );
    // CHECK finds the reservation, or names the container.
    run.ok(&host_local(), "CHECK", "b", "eth0", &c);
    let (_, msg) = run.fails(&host_local(), "CHECK", "zz", "eth0", "", &c);
    assert_eq!(
        msg,
        "host-local: Failed to find address added by container zz"
    );

    // GC (beyond upstream): keeps the valid attachments, releases the rest.
    let mut gc: Value = serde_json::from_str(&c).expect("conf");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "b", "ifname": "eth0"}]);
    run.ok(&host_local(), "GC", "", "", &gc.to_string());
    assert_eq!(
        reservations(&dir),
        vec![("10.1.2.3".into(), "b\r\neth0".into())]
    );
    run.ok(&host_local(), "STATUS", "", "", &c);
    gc["cni.dev/valid-attachments"] = json!([]);
    run.ok(&host_local(), "GC", "", "", &gc.to_string());
    assert_eq!(reservations(&dir), vec![]);
    // DEL of something never added is fine.
    run.ok(&host_local(), "DEL", "never", "eth0", &c);
}

#[test]
fn requested_addresses_legacy_files_and_whitespace() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let data = sandbox.state_dir().to_path_buf();
    let dir = data.join("net1");
    let c = conf(&data, "1.0.0", json!({"subnet": "10.1.0.0/24"}));
    // CNI_ARGS IP=, then args.cni.ips, then runtimeConfig.ips.
    let out = run.call(&host_local(), "ADD", "a", "eth0", "IP=10.1.0.50", &c);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("10.1.0.50/24"), "{}", out.stdout);
    let mut with_args: Value = serde_json::from_str(&c).expect("conf");
    with_args["args"] = json!({"cni": {"ips": ["10.1.0.60/24"]}});
    assert_eq!(
        address(
            &run.add(&host_local(), "b", "eth0", &with_args.to_string()),
            0
        ),
        "10.1.0.60/24"
    );
    let mut with_rc: Value = serde_json::from_str(&c).expect("conf");
    with_rc["runtimeConfig"] = json!({"ips": ["10.1.0.70"]});
    assert_eq!(
        address(
            &run.add(&host_local(), "c", "eth0", &with_rc.to_string()),
            0
        ),
        "10.1.0.70/24"
    );
    // Taken, the gateway, outside every range.
    let (_, msg) = run.fails(&host_local(), "ADD", "d", "eth0", "IP=10.1.0.50", &c);
    assert_eq!(
        msg,
        "failed to allocate for range 0: requested IP address 10.1.0.50 is not available in range set 10.1.0.1-10.1.0.254"
    );
    let (_, msg) = run.fails(&host_local(), "ADD", "d", "eth0", "IP=10.1.0.1", &c);
    assert_eq!(
        msg,
        "failed to allocate for range 0: requested ip 10.1.0.1 is subnet's gateway"
    );
    let (_, msg) = run.fails(&host_local(), "ADD", "d", "eth0", "IP=10.7.0.1", &c);
    assert_eq!(msg, "failed to allocate all requested IPs: 10.7.0.1");
    let (_, msg) = run.fails(&host_local(), "ADD", "d", "eth0", "FOO=1", &c);
    assert_eq!(msg, "ARGS: unknown args [\"FOO=1\"]");
    assert_eq!(
        reservations(&dir).len(),
        3,
        "a failed ADD reserved something"
    );

    // Files written by old versions hold the ID alone; whitespace is tolerated.
    std::fs::write(dir.join("10.1.0.90"), "old-ctr").expect("legacy file");
    std::fs::write(dir.join("10.1.0.91"), "  b\r\neth1\n").expect("spaced file");
    run.ok(&host_local(), "DEL", "old-ctr", "eth0", &c);
    run.ok(&host_local(), "DEL", "b", "eth1", &c);
    let left: Vec<String> = reservations(&dir).into_iter().map(|(ip, _)| ip).collect();
    assert_eq!(left, vec!["10.1.0.50", "10.1.0.60", "10.1.0.70"]);

    // Config errors, as upstream words them.
    for (ipam, message) in [
        (json!({"subnet": null}), "no IP ranges specified"),
        (
            json!({"subnet": "10.1.0.0/31"}),
            "invalid range set 0: Network 10.1.0.0/31 too small to allocate from",
        ),
        (
            json!({"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "10.1.0.0/25"}]]}),
            "range set 0 overlaps with 1",
        ),
    ] {
        let c = conf(&data, "1.0.0", ipam);
        assert_eq!(
            run.fails(&host_local(), "ADD", "x", "eth0", "", &c),
            (999, message.to_string())
        );
    }
    let no_ipam = json!({"cniVersion": "1.0.0", "name": "net1", "type": "host-local"}).to_string();
    assert_eq!(
        run.fails(&host_local(), "ADD", "x", "eth0", "", &no_ipam),
        (999, "IPAM config missing 'ipam' key".to_string())
    );
}

#[test]
fn dual_stack_range_sets_and_resolv_conf() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let data = sandbox.state_dir().to_path_buf();
    let resolv = data.join("resolv.conf");
    std::fs::write(
        &resolv,
        "# comment\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain example.org\nsearch a.example b.example\noptions ndots:2 edns0\n",
    )
    .expect("resolv.conf");
    let c = conf(
        &data,
        "0.4.0",
        json!({
            "ranges": [
                [{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.100"}, {"subnet": "10.2.0.0/24"}],
                [{"subnet": "fd00:1::/64", "gateway": "fd00:1::fe"}],
            ],
            "resolvConf": resolv,
        }),
    );
    let r = run.add(&host_local(), "a", "eth0", &c);
    assert_eq!(
        r,
        json!({
            "cniVersion": "0.4.0",
            "ips": [
                {"version": "4", "address": "10.1.0.100/24", "gateway": "10.1.0.1"},
                {"version": "6", "address": "fd00:1::1/64", "gateway": "fd00:1::fe"},
            ],
            "dns": {"nameservers": ["10.0.0.53", "fd00::53"], "domain": "example.org",
                    "search": ["a.example", "b.example"], "options": ["ndots:2", "edns0"]},
        })
    );
    let files: Vec<String> = reservations(&data.join("net1"))
        .into_iter()
        .map(|(ip, _)| ip)
        .collect();
    assert_eq!(files, vec!["10.1.0.100", "fd00:1::1"]);
    assert_eq!(
        std::fs::read_to_string(data.join("net1/last_reserved_ip.1")).expect("last 1"),
        "fd00:1::1"
    );
    run.ok(&host_local(), "DEL", "a", "eth0", &c);
    assert_eq!(reservations(&data.join("net1")), vec![]);
    // Two range sets of one family need 0.3.0.
    let old = conf(
        &data,
        "0.2.0",
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]}),
    );
    assert_eq!(
        run.fails(&host_local(), "ADD", "a", "eth0", "", &old).1,
        "CNI version 0.2.0 does not support more than 1 address per family"
    );
}

#[test]
fn concurrent_processes_never_share_an_address() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let data = sandbox.state_dir().to_path_buf();
    let c = conf(&data, "1.0.0", json!({"subnet": "10.3.0.0/24"}));
    std::thread::scope(|scope| {
        for i in 0..30 {
            let (run, c) = (&run, &c);
            scope.spawn(move || run.add(&host_local(), &format!("c{i}"), "eth0", c));
        }
    });
    let files = reservations(&data.join("net1"));
    assert_eq!(files.len(), 30);
    let ids: std::collections::BTreeSet<_> = files.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ids.len(), 30);
}

#[test]
fn go_host_local_and_ours_share_the_store() {
    require_root!();
    let Some(go) = go_plugin("host-local") else {
        return;
    };
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let data = sandbox.state_dir().to_path_buf();
    let dir = data.join("net1");
    let c = conf(&data, "1.0.0", json!({"subnet": "10.4.0.0/24"}));
    assert_eq!(address(&run.add(&go, "go-1", "eth0", &c), 0), "10.4.0.2/24");
    let go_file = std::fs::read(dir.join("10.4.0.2")).expect("go file");
    assert_eq!(go_file, b"go-1\r\neth0");
    // Ours continues Go's round robin, writes the same bytes, and releases Go's.
    assert_eq!(
        address(&run.add(&host_local(), "rs-1", "eth0", &c), 0),
        "10.4.0.3/24"
    );
    assert_eq!(
        std::fs::read(dir.join("10.4.0.3")).expect("our file"),
        b"rs-1\r\neth0"
    );
    run.ok(&host_local(), "CHECK", "go-1", "eth0", &c);
    run.ok(&host_local(), "DEL", "go-1", "eth0", &c);
    // Go continues ours, checks and releases ours.
    assert_eq!(address(&run.add(&go, "go-2", "eth0", &c), 0), "10.4.0.4/24");
    run.ok(&go, "CHECK", "rs-1", "eth0", &c);
    run.ok(&go, "DEL", "rs-1", "eth0", &c);
    assert_eq!(
        reservations(&dir),
        vec![("10.4.0.4".into(), "go-2\r\neth0".into())]
    );
    run.ok(&host_local(), "DEL", "go-2", "eth0", &c);
    assert_eq!(reservations(&dir), vec![]);
}

fn static_ipam() -> PathBuf {
    plugin("static")
}

#[test]
fn static_addresses_from_config_args_and_runtime_config() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let base = json!({
        "cniVersion": "1.0.0", "name": "s", "type": "bridge",
        "ipam": {
            "type": "static",
            "addresses": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}, {"address": "fd00::5/64"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.10.0.53"]},
        },
    });
    let r = run.add(&static_ipam(), "a", "eth0", &base.to_string());
    assert_eq!(
        r,
        json!({"cniVersion": "1.0.0",
               "ips": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}, {"address": "fd00::5/64"}],
               "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.10.0.53"]}})
    );
    // CNI_ARGS adds addresses and attaches gateways by subnet.
    let out = run.call(
        &static_ipam(),
        "ADD",
        "a",
        "eth0",
        "IP=10.20.0.5/16,10.30.0.5/24;GATEWAY=10.20.0.1",
        &base.to_string(),
    );
    let r: Value = serde_json::from_str(&out.stdout).expect("result");
    assert_eq!(
        r["ips"][2],
        json!({"address": "10.20.0.5/16", "gateway": "10.20.0.1"})
    );
    assert_eq!(r["ips"][3], json!({"address": "10.30.0.5/24"}));
    // args.cni.ips replaces, runtimeConfig.ips replaces again.
    let mut c = base.clone();
    c["args"] = json!({"cni": {"ips": ["10.40.0.5/24"]}});
    assert_eq!(
        run.add(&static_ipam(), "a", "eth0", &c.to_string())["ips"],
        json!([{"address": "10.40.0.5/24"}])
    );
    c["runtimeConfig"] = json!({"ips": ["10.50.0.5/24"]});
    assert_eq!(
        run.add(&static_ipam(), "a", "eth0", &c.to_string())["ips"],
        json!([{"address": "10.50.0.5/24"}])
    );
    // Errors.
    let (_, msg) = run.fails(
        &static_ipam(),
        "ADD",
        "a",
        "eth0",
        "IP=10.1.1.1",
        &base.to_string(),
    );
    assert_eq!(
        msg,
        "the 'ip' field is expected to be in CIDR notation, got: '10.1.1.1'"
    );
    let (_, msg) = run.fails(
        &static_ipam(),
        "ADD",
        "a",
        "eth0",
        "IP=10.1.1.1/24;GATEWAY=nope",
        &base.to_string(),
    );
    assert_eq!(msg, "invalid gateway address: nope");
    c["runtimeConfig"] = json!({"ips": ["10.50.0.5"]});
    let (_, msg) = run.fails(&static_ipam(), "ADD", "a", "eth0", "", &c.to_string());
    assert_eq!(
        msg,
        "the 'ips' field is expected to be in CIDR notation, got: '10.50.0.5'"
    );
    let mut old = base.clone();
    old["cniVersion"] = json!("0.2.0");
    old["ipam"]["addresses"] = json!([{"address": "10.1.0.1/24"}, {"address": "10.2.0.1/24"}]);
    assert_eq!(
        run.fails(&static_ipam(), "ADD", "a", "eth0", "", &old.to_string())
            .1,
        "CNI version 0.2.0 does not support more than 1 address per family"
    );
    // CHECK compares gateways with prevResult; DEL has nothing to release.
    let mut check = base.clone();
    check["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}]});
    run.ok(&static_ipam(), "CHECK", "a", "eth0", &check.to_string());
    check["prevResult"]["ips"][0]["gateway"] = json!("10.10.0.2");
    run.fails(&static_ipam(), "CHECK", "a", "eth0", "", &check.to_string());
    run.ok(&static_ipam(), "DEL", "a", "eth0", &base.to_string());

    // Through bridge, against the kernel.
    let mut with_bridge = base.clone();
    with_bridge["bridge"] = json!("br-static");
    run.add(&plugin("bridge"), "a", "eth0", &with_bridge.to_string());
    let addrs = common::addresses(&sandbox, sandbox.container_name(), "eth0");
    assert_eq!(addrs, vec!["10.10.0.5/24", "fd00::5/64"]);
    run.ok(
        &plugin("bridge"),
        "DEL",
        "a",
        "eth0",
        &with_bridge.to_string(),
    );
}
