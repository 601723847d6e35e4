//! bridge against the kernel, in sandboxes: every call runs the real binary inside
//! the sandbox's host netns, and the outcome is read back with `ip`, `iptables`, `nft`
//! and the files, never from the plugin's own claims.

mod common;

use std::path::{Path, PathBuf};

use cni_testkit::{Sandbox, require_root};
use common::{
    Runner, addresses, go_plugin, host_cmd, ip_json, iptables_nat, links, nft_ruleset, plugin,
    reservations,
};
use serde_json::{Value, json};

/// The seed's mynet, with its state in the sandbox.
fn mynet(sandbox: &Sandbox, extra: Value) -> (String, PathBuf) {
    let data_dir = sandbox.state_dir().join("ipam");
    let mut conf = json!({
        "cniVersion": "1.0.0",
        "name": "mynet",
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": true,
        "ipMasq": true,
        "ipam": {
            "type": "host-local",
            "subnet": "10.22.0.0/16",
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": data_dir,
        }
    });
    merge(&mut conf, extra);
    (conf.to_string(), data_dir.join("mynet"))
}

fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(base), Value::Object(extra)) = (base, extra) {
        for (k, v) in extra {
            match (base.get_mut(&k), v) {
                (Some(b @ Value::Object(_)), v @ Value::Object(_)) => merge(b, v),
                (_, v) if v.is_null() => {
                    base.remove(&k);
                }
                (_, v) => {
                    base.insert(k, v);
                }
            }
        }
    }
}

fn bridge() -> PathBuf {
    plugin("bridge")
}

/// A sysctl as seen inside the named namespace.
fn sysctl(_sandbox: &Sandbox, ns: &str, name: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "cat", &format!("/proc/sys/{name}")])
        .output()
        .expect("ip netns exec");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What DEL must leave: no veth on the host, only `lo` in the container, no
/// reservation, no masquerade chain or rule. The bridge stays, as upstream.
fn assert_clean(sandbox: &Sandbox, network_dir: &Path) {
    let host_links = links(sandbox, sandbox.host_name());
    assert!(
        host_links.iter().all(|l| l == "lo" || l == "cni0"),
        "host links left: {host_links:?}"
    );
    assert_eq!(links(sandbox, sandbox.container_name()), vec!["lo"]);
    assert_eq!(reservations(network_dir), vec![]);
    let nat = iptables_nat(sandbox, false) + &iptables_nat(sandbox, true);
    assert!(!nat.contains("CNI-"), "iptables rules left: {nat}");
    let nft = nft_ruleset(sandbox);
    assert!(!nft.contains("masquerade comment"), "nft rules left: {nft}");
    assert!(!nft.contains("macspoofchk"), "spoofchk rules left: {nft}");
}

#[test]
fn seed_walkthrough_add_check_del() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let (conf, dir) = mynet(&sandbox, json!({}));
    let result = run.add(&bridge(), "ctr-1", "eth0", &conf);

    // The result: bridge, host veth, container veth; the address on interface 2.
    let ifaces = result["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifaces.len(), 3);
    assert_eq!(ifaces[0]["name"], "cni0");
    let host_veth = ifaces[1]["name"].as_str().expect("host veth");
    assert!(
        host_veth.starts_with("veth") && host_veth.len() == 12,
        "{host_veth}"
    );
    assert_eq!(ifaces[2]["sandbox"], sandbox.container_path());
    assert_eq!(
        result["ips"],
        json!([{"address": "10.22.0.2/16", "gateway": "10.22.0.1", "interface": 2}])
    );

    // The kernel agrees.
    let ctr = sandbox.container_name();
    let host = sandbox.host_name();
    assert_eq!(addresses(&sandbox, ctr, "eth0"), vec!["10.22.0.2/16"]);
    let routes = sandbox.ip(ctr, &["route"]);
    assert!(
        routes.contains("default via 10.22.0.1 dev eth0"),
        "{routes}"
    );
    assert_eq!(addresses(&sandbox, host, "cni0"), vec!["10.22.0.1/16"]);
    let port = &ip_json(&sandbox, host, &["-d", "link", "show", host_veth])[0];
    assert_eq!(port["master"], "cni0");
    assert_eq!(port["operstate"], "UP");
    // Created enslaved and up in one request; a new port's defaults are untouched.
    assert_eq!(port["linkinfo"]["info_slave_data"]["hairpin"], false);
    assert_eq!(port["linkinfo"]["info_slave_data"]["isolated"], false);
    assert_eq!(port["address"], ifaces[1]["mac"]);
    assert_eq!(
        ifaces[0]["mac"],
        ip_json(&sandbox, host, &["link", "show", "cni0"])[0]["address"]
    );
    assert_eq!(
        sysctl(
            &sandbox,
            host,
            &format!("net/ipv6/conf/{host_veth}/accept_ra")
        ),
        "0"
    );
    assert_eq!(
        ifaces[2]["mac"],
        ip_json(&sandbox, ctr, &["link", "show", "eth0"])[0]["address"]
    );
    assert_eq!(sysctl(&sandbox, host, "net/ipv4/ip_forward"), "1");
    assert_eq!(sysctl(&sandbox, ctr, "net/ipv6/conf/eth0/accept_dad"), "0");
    assert_eq!(sysctl(&sandbox, ctr, "net/ipv4/conf/eth0/arp_notify"), "1");

    // host-local's file, byte for byte, and the masquerade rules by upstream's names.
    assert_eq!(
        reservations(&dir),
        vec![("10.22.0.2".into(), "ctr-1\r\neth0".into())]
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("last_reserved_ip.0")).expect("last reserved"),
        "10.22.0.2"
    );
    let chain = format!("CNI-{}", &sha512_hex("mynetctr-1")[..24]);
    let nat = iptables_nat(&sandbox, false);
    let comment = r#"-m comment --comment "name: \"mynet\" id: \"ctr-1\"""#;
    for rule in [
        format!("-A POSTROUTING -s 10.22.0.2/32 {comment} -j {chain}"),
        format!("-A {chain} -d 10.22.0.0/16 {comment} -j ACCEPT"),
        format!("-A {chain} ! -d 224.0.0.0/4 {comment} -j MASQUERADE"),
    ] {
        assert!(nat.contains(&rule), "missing {rule} in\n{nat}");
    }

    let ping = sandbox.exec_in_container("ping", &["-c", "1", "-W", "2", "10.22.0.1"]);
    assert!(ping.status.success(), "ping the gateway: {ping:?}");

    let with_prev = |prev: &Value| {
        let mut c: Value = serde_json::from_str(&conf).expect("conf");
        c["prevResult"] = prev.clone();
        c.to_string()
    };
    run.ok(&bridge(), "CHECK", "ctr-1", "eth0", &with_prev(&result));

    run.ok(&bridge(), "DEL", "ctr-1", "eth0", &with_prev(&result));
    assert_clean(&sandbox, &dir);
    // DEL is idempotent.
    run.ok(&bridge(), "DEL", "ctr-1", "eth0", &with_prev(&result));
    run.ok(&bridge(), "DEL", "never-added", "eth0", &conf);
    assert_clean(&sandbox, &dir);
}

fn sha512_hex(text: &str) -> String {
    cni_net::netfilter::sha512_hex(text)
}

#[test]
fn an_interface_name_taken_in_the_container_is_upstreams_error_and_leaves_nothing() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let ctr = sandbox.container_name();
    sandbox.ip(
        ctr,
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
        ],
    );
    let (conf, dir) = mynet(&sandbox, json!({}));
    let (code, msg) = run.fails(&bridge(), "ADD", "ctr-1", "eth0", "", &conf);
    assert_eq!(code, 999);
    assert!(
        msg.starts_with("container veth name (\"eth0\") peer provided (\"veth")
            && msg.ends_with("already exists"),
        "{msg}"
    );
    let host_links = links(&sandbox, sandbox.host_name());
    assert!(
        host_links.iter().all(|l| l == "lo" || l == "cni0"),
        "host links left: {host_links:?}"
    );
    assert_eq!(reservations(&dir), vec![]);
}

#[test]
fn del_without_netns_or_link_still_releases_and_removes_masquerade() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let (conf, dir) = mynet(&sandbox, json!({}));
    run.add(&bridge(), "ctr-1", "eth0", &conf);

    // An empty CNI_NETNS (the runtime lost it): upstream releases the address and
    // leaks the rules; both go here.
    let out = sandbox.run_plugin(
        &bridge(),
        &cni_testkit::Call {
            command: "DEL",
            container_id: "ctr-1",
            ifname: "eth0",
            path: &run.path,
            ..Default::default()
        },
        &conf,
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    assert_eq!(reservations(&dir), vec![]);
    assert!(!iptables_nat(&sandbox, false).contains("CNI-"));

    // The netns path is gone (the container was removed first).
    let (conf, _) = mynet(&sandbox, json!({"ipMasqBackend": "nftables"}));
    run.add(&bridge(), "ctr-2", "eth1", &conf);
    assert!(nft_ruleset(&sandbox).contains("masquerade comment"));
    let out = sandbox.run_plugin(
        &bridge(),
        &cni_testkit::Call {
            command: "DEL",
            container_id: "ctr-2",
            netns: "/run/netns/rcni-test-does-not-exist",
            ifname: "eth1",
            path: &run.path,
            ..Default::default()
        },
        &conf,
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    assert_eq!(reservations(&dir), vec![]);
    assert!(!nft_ruleset(&sandbox).contains("masquerade comment"));
}

#[test]
fn del_removes_masquerade_jumps_it_did_not_write_too() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let (conf, dir) = mynet(&sandbox, json!({}));
    run.add(&bridge(), "ctr-1", "eth0", &conf);
    let chain = format!("CNI-{}", &sha512_hex("mynetctr-1")[..24]);
    // An older upstream wrote the jump with the subnet's prefix. DEL's one-restore
    // path (delete the jump ADD wrote, then the chain) fails on the chain still being
    // referenced, atomically; the table is then read and both jumps go.
    host_cmd(
        &sandbox,
        "/usr/sbin/iptables",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "10.22.0.0/16",
            "-j",
            &chain,
        ],
    );
    assert_eq!(
        iptables_nat(&sandbox, false)
            .matches(&format!("-j {chain}"))
            .count(),
        2
    );
    run.ok(&bridge(), "DEL", "ctr-1", "eth0", &conf);
    let nat = iptables_nat(&sandbox, false);
    assert!(!nat.contains(&chain), "left after DEL:\n{nat}");
    assert_clean(&sandbox, &dir);
}

#[test]
fn nftables_masquerade_backend() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let (conf, dir) = mynet(&sandbox, json!({"ipMasqBackend": "nftables"}));
    run.add(&bridge(), "ctr-1", "eth0", &conf);
    let nft = nft_ruleset(&sandbox);
    let h16 = |s: &str| sha512_hex(s)[..16].to_string();
    let comment = format!(
        "{}-{}, net: mynet, if: eth0, id: ctr-1",
        h16("mynet"),
        h16("eth0:ctr-1")
    );
    assert!(nft.contains("table inet cni_plugins_masquerade"), "{nft}");
    assert!(
        nft.contains(&format!(
            "ip saddr 10.22.0.2 ip daddr != 10.22.0.0/16 masquerade comment \"{comment}\""
        )),
        "{nft}"
    );
    assert!(nft.contains("goto masq_checks"), "{nft}");
    assert!(!iptables_nat(&sandbox, false).contains("CNI-"));
    // A second container finds the base chain in place and only adds its rule.
    run.add(&bridge(), "ctr-2", "eth1", &conf);
    let nft = nft_ruleset(&sandbox);
    let postrouting = nft
        .split("chain postrouting {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .unwrap_or_default();
    let rules: Vec<&str> = postrouting
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        rules,
        [
            "type nat hook postrouting priority srcnat; policy accept;",
            "ip daddr 224.0.0.0/4 return",
            "ip6 daddr ff00::/8 return",
            "goto masq_checks",
        ],
        "{nft}"
    );
    assert!(
        nft.contains("ip saddr 10.22.0.3 ip daddr != 10.22.0.0/16 masquerade"),
        "{nft}"
    );
    run.ok(&bridge(), "DEL", "ctr-2", "eth1", &conf);
    run.ok(&bridge(), "DEL", "ctr-1", "eth0", &conf);
    assert_clean(&sandbox, &dir);

    let (bad, _) = mynet(&sandbox, json!({"ipMasqBackend": "pf"}));
    let (code, msg) = run.fails(&bridge(), "ADD", "ctr-1", "eth0", "", &bad);
    assert_eq!((code, msg.as_str()), (999, "unknown ipmasq backend \"pf\""));
}

#[test]
fn link_keys_mtu_hairpin_isolation_mac_dad() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let (conf, dir) = mynet(
        &sandbox,
        json!({
            "mtu": 1400, "hairpinMode": true, "portIsolation": true, "enabledad": true,
            "ipMasq": false, "args": {"cni": {"mac": "0a:58:0a:16:00:aa"}},
        }),
    );
    // CNI_ARGS MAC < args.cni.mac < runtimeConfig.mac; IgnoreUnknown for host-local.
    let out = run.call(
        &bridge(),
        "ADD",
        "ctr-1",
        "eth0",
        "IgnoreUnknown=1;MAC=0a:58:0a:16:00:01",
        &conf,
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    let result: Value = serde_json::from_str(&out.stdout).expect("result");
    let ctr = sandbox.container_name();
    let eth0 = &ip_json(&sandbox, ctr, &["link", "show", "eth0"])[0];
    assert_eq!(eth0["address"], "0a:58:0a:16:00:aa");
    assert_eq!(eth0["mtu"], 1400);
    assert_eq!(result["interfaces"][2]["mac"], "0a:58:0a:16:00:aa");
    let host_veth = result["interfaces"][1]["name"].as_str().expect("veth");
    let port = &ip_json(
        &sandbox,
        sandbox.host_name(),
        &["-d", "link", "show", host_veth],
    )[0];
    assert_eq!(port["mtu"], 1400);
    assert_eq!(port["linkinfo"]["info_slave_data"]["hairpin"], true);
    assert_eq!(port["linkinfo"]["info_slave_data"]["isolated"], true);
    assert_eq!(sysctl(&sandbox, ctr, "net/ipv6/conf/eth0/accept_dad"), "1");
    assert_eq!(
        sysctl(&sandbox, ctr, "net/ipv6/conf/eth0/enhanced_dad"),
        "1"
    );
    run.ok(&bridge(), "DEL", "ctr-1", "eth0", &conf);

    // runtimeConfig wins over args; CNI_ARGS alone works too.
    let (conf, _) = mynet(
        &sandbox,
        json!({"ipMasq": false, "args": {"cni": {"mac": "0a:58:0a:16:00:aa"}},
               "runtimeConfig": {"mac": "0a:58:0a:16:00:bb"}}),
    );
    run.add(&bridge(), "ctr-2", "eth0", &conf);
    assert_eq!(
        ip_json(&sandbox, ctr, &["link", "show", "eth0"])[0]["address"],
        "0a:58:0a:16:00:bb"
    );
    run.ok(&bridge(), "DEL", "ctr-2", "eth0", &conf);
    let (conf, _) = mynet(&sandbox, json!({"ipMasq": false}));
    let out = run.call(
        &bridge(),
        "ADD",
        "ctr-3",
        "eth0",
        "IgnoreUnknown=true;MAC=0a:58:0a:16:00:cc",
        &conf,
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        ip_json(&sandbox, ctr, &["link", "show", "eth0"])[0]["address"],
        "0a:58:0a:16:00:cc"
    );
    run.ok(&bridge(), "DEL", "ctr-3", "eth0", &conf);
    assert_clean(&sandbox, &dir);

    // Hairpin and promisc together are refused before anything is made.
    let (conf, _) = mynet(&sandbox, json!({"hairpinMode": true, "promiscMode": true}));
    let (code, msg) = run.fails(&bridge(), "ADD", "ctr-4", "eth0", "", &conf);
    assert_eq!(
        (code, msg.as_str()),
        (
            999,
            "cannot set hairpin mode and promiscuous mode at the same time"
        )
    );
}

#[test]
fn gateway_keys_promisc_default_gateway_force_address_and_dns() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let host = sandbox.host_name();
    // A bridge that already has another address: refused without forceAddress, and
    // the failed ADD leaves nothing behind (address released, veth gone).
    sandbox.ip(host, &["link", "add", "cni0", "type", "bridge"]);
    sandbox.ip(host, &["addr", "add", "10.99.0.1/16", "dev", "cni0"]);
    let (conf, dir) = mynet(&sandbox, json!({}));
    let (code, msg) = run.fails(&bridge(), "ADD", "ctr-1", "eth0", "", &conf);
    assert_eq!(
        (code, msg.as_str()),
        (
            999,
            "\"cni0\" already has an IP address different from 10.22.0.1/16"
        )
    );
    assert_clean(&sandbox, &dir);

    let (conf, dir) = mynet(
        &sandbox,
        json!({
            "forceAddress": true, "isGateway": false, "isDefaultGateway": true,
            "promiscMode": true, "ipMasq": false,
            "ipam": {"routes": null},
            "dns": {"nameservers": ["10.22.0.53"], "search": ["example.org"]},
        }),
    );
    let result = run.add(&bridge(), "ctr-1", "eth0", &conf);
    assert_eq!(addresses(&sandbox, host, "cni0"), vec!["10.22.0.1/16"]);
    let cni0 = &ip_json(&sandbox, host, &["link", "show", "cni0"])[0];
    assert!(
        cni0["flags"]
            .as_array()
            .expect("flags")
            .contains(&json!("PROMISC"))
    );
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.22.0.1"}])
    );
    assert_eq!(
        result["dns"],
        json!({"nameservers": ["10.22.0.53"], "search": ["example.org"]})
    );
    let routes = sandbox.ip(sandbox.container_name(), &["route"]);
    assert!(
        routes.contains("default via 10.22.0.1 dev eth0"),
        "{routes}"
    );
    let mut check: Value = serde_json::from_str(&conf).expect("conf");
    check["prevResult"] = result;
    run.ok(&bridge(), "CHECK", "ctr-1", "eth0", &check.to_string());
    // CHECK notices a promiscuity that differs from the config.
    check["promiscMode"] = json!(false);
    let (_, msg) = run.fails(&bridge(), "CHECK", "ctr-1", "eth0", "", &check.to_string());
    assert!(msg.contains("promiscuous mode"), "{msg}");
    run.ok(&bridge(), "DEL", "ctr-1", "eth0", &conf);
    assert_clean(&sandbox, &dir);
}

#[test]
fn l2_modes_and_mac_spoof_check() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let ctr = sandbox.container_name();
    // L2 only: no ipam, the container link is up without addresses.
    let conf = json!({"cniVersion": "1.0.0", "name": "l2", "type": "bridge", "bridge": "br-l2",
                      "macspoofchk": true})
    .to_string();
    let result = run.add(&bridge(), "ctr-1", "eth0", &conf);
    assert_eq!(result["ips"], Value::Null);
    let eth0 = &ip_json(&sandbox, ctr, &["link", "show", "eth0"])[0];
    assert!(
        eth0["flags"]
            .as_array()
            .expect("flags")
            .contains(&json!("UP"))
    );
    assert_eq!(addresses(&sandbox, ctr, "eth0"), Vec::<String>::new());
    let nft = nft_ruleset(&sandbox);
    let mac = eth0["address"].as_str().expect("mac");
    assert!(nft.contains("table bridge nat"), "{nft}");
    assert!(nft.contains("chain cni-br-iface-ctr-1-eth0-mac"), "{nft}");
    assert!(
        nft.contains(&format!(
            "ether saddr {mac} return comment \"macspoofchk-ctr-1-eth0\""
        )),
        "{nft}"
    );
    assert!(
        nft.contains("drop comment \"macspoofchk-ctr-1-eth0\""),
        "{nft}"
    );
    run.ok(&bridge(), "DEL", "ctr-1", "eth0", &conf);
    let nft = nft_ruleset(&sandbox);
    assert!(
        !nft.contains("macspoofchk") && !nft.contains("cni-br-iface"),
        "{nft}"
    );

    // disableContainerInterface: the container end stays down; with ipam it is refused.
    let conf = json!({"cniVersion": "1.0.0", "name": "l2", "type": "bridge", "bridge": "br-l2",
                      "disableContainerInterface": true})
    .to_string();
    run.add(&bridge(), "ctr-2", "eth0", &conf);
    let eth0 = &ip_json(&sandbox, ctr, &["link", "show", "eth0"])[0];
    assert!(
        !eth0["flags"]
            .as_array()
            .expect("flags")
            .contains(&json!("UP"))
    );
    run.ok(&bridge(), "DEL", "ctr-2", "eth0", &conf);
    let (conf, _) = mynet(&sandbox, json!({"disableContainerInterface": true}));
    let (code, msg) = run.fails(&bridge(), "ADD", "ctr-3", "eth0", "", &conf);
    assert_eq!(
        (code, msg.as_str()),
        (
            999,
            "cannot use IPAM when DisableContainerInterface flag is set"
        )
    );
    assert_eq!(links(&sandbox, ctr), vec!["lo"]);
}

#[test]
fn vlan_keys_are_validated_and_need_vlan_filtering() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    for (extra, message) in [
        (
            json!({"vlan": 4095}),
            "invalid VLAN ID 4095 (must be between 0 and 4094)",
        ),
        (
            json!({"vlan": -1}),
            "invalid VLAN ID -1 (must be between 0 and 4094)",
        ),
        (
            json!({"vlanTrunk": [{"minID": 10}]}),
            "minID and maxID should be configured simultaneously, maxID is missing",
        ),
        (
            json!({"vlanTrunk": [{"minID": 10, "maxID": 5}]}),
            "minID is greater than maxID in trunk parameter",
        ),
        (
            json!({"vlanTrunk": [{"id": 0}]}),
            "incorrect trunk id parameter",
        ),
    ] {
        let (conf, _) = mynet(&sandbox, extra);
        assert_eq!(
            run.fails(&bridge(), "ADD", "ctr-1", "eth0", "", &conf),
            (999, message.to_string())
        );
    }
    // Applying a VLAN needs bridge vlan_filtering, which this kernel lacks: the
    // netlink requests are covered against the fake socket (bridge unit tests).
    let probe = std::process::Command::new("ip")
        .args([
            "-n",
            sandbox.host_name(),
            "link",
            "add",
            "vlanprobe",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])
        .output()
        .expect("ip");
    if !probe.status.success() {
        eprintln!(
            "skipped: bridge vlan/vlanTrunk against the kernel: no bridge vlan_filtering here ({})",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        return;
    }
    let (conf, dir) = mynet(
        &sandbox,
        json!({"bridge": "br-vlan", "vlan": 100, "ipMasq": false}),
    );
    run.add(&bridge(), "ctr-1", "eth0", &conf);
    let vlans = host_cmd(&sandbox, "/usr/sbin/bridge", &["vlan", "show"]);
    assert!(vlans.contains("100 PVID Egress Untagged"), "{vlans}");
    run.ok(&bridge(), "DEL", "ctr-1", "eth0", &conf);
    assert_eq!(reservations(&dir), vec![]);
}

#[test]
fn ipv6_and_dual_stack() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let (conf, dir) = mynet(
        &sandbox,
        json!({
            "ipam": {"subnet": null, "routes": null, "ranges": [
                [{"subnet": "10.22.0.0/16"}],
                [{"subnet": "fd00:22::/64"}],
            ]},
            "isDefaultGateway": true,
        }),
    );
    let result = run.add(&bridge(), "ctr-1", "eth0", &conf);
    assert_eq!(
        result["ips"],
        json!([
            {"address": "10.22.0.2/16", "gateway": "10.22.0.1", "interface": 2},
            {"address": "fd00:22::2/64", "gateway": "fd00:22::1", "interface": 2},
        ])
    );
    let ctr = sandbox.container_name();
    let host = sandbox.host_name();
    assert_eq!(
        addresses(&sandbox, ctr, "eth0"),
        vec!["10.22.0.2/16", "fd00:22::2/64"]
    );
    let mut bridge_addrs = addresses(&sandbox, host, "cni0");
    bridge_addrs.sort();
    assert_eq!(bridge_addrs, vec!["10.22.0.1/16", "fd00:22::1/64"]);
    assert!(
        sandbox
            .ip(ctr, &["-6", "route"])
            .contains("default via fd00:22::1 dev eth0")
    );
    assert_eq!(sysctl(&sandbox, host, "net/ipv6/conf/all/forwarding"), "1");
    let nat6 = iptables_nat(&sandbox, true);
    assert!(nat6.contains("-s fd00:22::2/128"), "{nat6}");
    assert!(nat6.contains("! -d ff00::/8"), "{nat6}");
    // The gateway address answers once its duplicate address detection is over.
    for _ in 0..60 {
        if !sandbox
            .ip(host, &["-6", "addr", "show", "dev", "cni0"])
            .contains("tentative")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ping = sandbox.exec_in_container("ping", &["-6", "-c", "1", "-W", "3", "fd00:22::1"]);
    assert!(ping.status.success(), "ping6 the gateway: {ping:?}");
    run.ok(&bridge(), "DEL", "ctr-1", "eth0", &conf);
    assert_clean(&sandbox, &dir);
}

#[test]
fn fifty_parallel_adds_onto_a_new_bridge() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let (conf, dir) = mynet(&sandbox, json!({"ipMasq": false}));
    let results: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let (run, conf) = (&run, &conf);
                scope.spawn(move || {
                    run.add(&bridge(), &format!("ctr-{i}"), &format!("eth{i}"), conf)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let mut ips: Vec<String> = results
        .iter()
        .map(|r| {
            r["ips"][0]["address"]
                .as_str()
                .expect("address")
                .to_string()
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 50, "duplicate addresses handed out");
    assert_eq!(reservations(&dir).len(), 50);
    assert_eq!(
        addresses(&sandbox, sandbox.container_name(), "eth49").len(),
        1
    );
    std::thread::scope(|scope| {
        for i in 0..50 {
            let (run, conf) = (&run, &conf);
            scope.spawn(move || {
                run.ok(
                    &bridge(),
                    "DEL",
                    &format!("ctr-{i}"),
                    &format!("eth{i}"),
                    conf,
                )
            });
        }
    });
    assert_clean(&sandbox, &dir);
}

#[test]
fn ipam_in_process_and_exec_give_the_same_result_and_state() {
    require_root!();
    let sandbox = Sandbox::new();
    // CNI_PATH with host-local as a copy of the binary: a different file, so it is
    // executed; with our installed links it is this same binary and runs in-process.
    let copy_dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(plugin("host-local"), copy_dir.path().join("host-local")).expect("copy");
    // (result, reservation files, last_reserved_ip.0) of one ADD.
    type Outcome = (Value, Vec<(String, String)>, String);
    let outcomes: Vec<Outcome> = [None, Some(copy_dir.path())]
        .into_iter()
        .map(|ipam_dir| {
            let mut run = Runner::new(&sandbox);
            if let Some(dir) = ipam_dir {
                run.path = format!("{}:{}", dir.display(), run.path);
            }
            let (conf, dir) = mynet(&sandbox, json!({"ipMasq": false}));
            let mut result = run.add(&bridge(), "ctr-1", "eth0", &conf);
            let files = reservations(&dir);
            let last = std::fs::read_to_string(dir.join("last_reserved_ip.0")).expect("last");
            run.ok(&bridge(), "DEL", "ctr-1", "eth0", &conf);
            // Kernel-made names and MACs differ between runs by design.
            result["interfaces"] = Value::Null;
            // Start the second run from the same allocator state.
            let _ = std::fs::remove_file(dir.join("last_reserved_ip.0"));
            (result, files, last)
        })
        .collect();
    assert_eq!(outcomes[0], outcomes[1]);
    // An IPAM error keeps its code and text both ways.
    for ipam_dir in [None, Some(copy_dir.path())] {
        let mut run = Runner::new(&sandbox);
        if let Some(dir) = ipam_dir {
            run.path = format!("{}:{}", dir.display(), run.path);
        }
        let (conf, _) = mynet(&sandbox, json!({"ipam": {"subnet": "10.22.0.5/16"}}));
        let (code, msg) = run.fails(&bridge(), "ADD", "ctr-1", "eth0", "", &conf);
        assert_eq!(code, 999);
        assert!(
            msg.starts_with("invalid range set 0: Network has host bits set"),
            "{msg}"
        );
    }
}

#[test]
fn masquerade_and_addresses_interoperate_with_go_bridge() {
    require_root!();
    let (Some(go_bridge), Some(go_host_local)) = (go_plugin("bridge"), go_plugin("host-local"))
    else {
        return;
    };
    let sandbox = Sandbox::new();
    let ours = Runner::new(&sandbox);
    let go_dir =
        cni_testkit::plugin_dir_with(&[("bridge", &go_bridge), ("host-local", &go_host_local)]);
    let mut go = Runner::new(&sandbox);
    go.path = go_dir.path().display().to_string();
    let (conf, dir) = mynet(&sandbox, json!({}));

    // Go's ADD, our DEL.
    let result = go.add(&go_bridge, "ctr-go", "eth0", &conf);
    assert_eq!(result["ips"][0]["address"], "10.22.0.2/16");
    let chain = format!("CNI-{}", &sha512_hex("mynetctr-go")[..24]);
    assert!(iptables_nat(&sandbox, false).contains(&chain));
    // Ours respects Go's reservation and continues its round robin.
    let ours_result = ours.add(&bridge(), "ctr-rs", "eth1", &conf);
    assert_eq!(ours_result["ips"][0]["address"], "10.22.0.3/16");
    ours.ok(&bridge(), "DEL", "ctr-go", "eth0", &conf);
    let nat = iptables_nat(&sandbox, false);
    assert!(
        !nat.contains(&chain),
        "Go's rules left after our DEL:\n{nat}"
    );
    assert_eq!(
        reservations(&dir),
        vec![("10.22.0.3".into(), "ctr-rs\r\neth1".into())]
    );

    // Our ADD, Go's DEL.
    let chain = format!("CNI-{}", &sha512_hex("mynetctr-rs")[..24]);
    assert!(iptables_nat(&sandbox, false).contains(&chain));
    go.ok(&go_bridge, "DEL", "ctr-rs", "eth1", &conf);
    let nat = iptables_nat(&sandbox, false);
    assert!(
        !nat.contains(&chain),
        "our rules left after Go's DEL:\n{nat}"
    );
    assert_clean(&sandbox, &dir);
}
