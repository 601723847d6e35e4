//! The defects a platform team found by attacking the plugins (issue 15), each as a
//! test against the real binaries in sandboxes: every one failed before its fix.

mod common;

use std::path::Path;

use cni_testkit::{Sandbox, require_root};
use common::{Runner, error_of, iptables_nat, links, plugin, reservations};
use serde_json::{Value, json};

fn bridge_conf(sandbox: &Sandbox, extra: Value) -> (Value, std::path::PathBuf) {
    let data_dir = sandbox.state_dir().join("ipam");
    let mut conf = json!({
        "cniVersion": "1.1.0", "name": "relnet", "type": "bridge", "bridge": "cni-rel",
        "isGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "subnet": "10.44.0.0/24", "dataDir": data_dir},
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        conf[k] = v.clone();
    }
    (conf, data_dir.join("relnet"))
}

fn jumps(sandbox: &Sandbox) -> Vec<String> {
    iptables_nat(sandbox, false)
        .lines()
        .filter(|l| l.starts_with("-A POSTROUTING") && l.contains("relnet"))
        .map(str::to_string)
        .collect()
}

/// Defect 1: a DEL for one attachment removed another's NAT.
#[test]
fn a_del_of_one_attachment_keeps_the_other_attachments_masquerade() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let (conf, _) = bridge_conf(&sandbox, json!({}));
    let conf = conf.to_string();
    let eth0 = run.add(&plugin("bridge"), "pod", "eth0", &conf);
    assert_eq!(jumps(&sandbox).len(), 1);

    // A DEL of an attachment never added (or whose ADD failed) owns nothing.
    run.ok(&plugin("bridge"), "DEL", "pod", "eth9", &conf);
    assert_eq!(jumps(&sandbox).len(), 1, "eth0's masquerade must stay");

    // A second attachment of the same container shares the chain (upstream's name
    // has no ifname): its DEL leaves eth0's jump and ACCEPT rule.
    let eth1 = run.add(&plugin("bridge"), "pod", "eth1", &conf);
    assert_eq!(jumps(&sandbox).len(), 2);
    let with_prev = |result: &Value| {
        let mut c: Value = serde_json::from_str(&conf).expect("conf");
        c["prevResult"] = result.clone();
        c.to_string()
    };
    run.ok(&plugin("bridge"), "DEL", "pod", "eth1", &with_prev(&eth1));
    let left = jumps(&sandbox);
    assert_eq!(left.len(), 1, "{left:#?}");
    let eth0_ip = eth0["ips"][0]["address"].as_str().expect("address");
    let eth0_ip = eth0_ip.split('/').next().expect("ip");
    assert!(left[0].contains(&format!("-s {eth0_ip}/32")), "{left:#?}");
    let nat = iptables_nat(&sandbox, false);
    assert!(
        nat.contains("-d 10.44.0.0/24") && nat.contains("MASQUERADE"),
        "{nat}"
    );

    run.ok(&plugin("bridge"), "DEL", "pod", "eth0", &with_prev(&eth0));
    let nat = iptables_nat(&sandbox, false);
    assert!(!nat.contains("relnet"), "{nat}");
}

/// Defect 1, portmap: a DEL for an attachment never added removed the DNATs of the
/// container's live attachment.
#[test]
fn a_portmap_del_of_an_attachment_never_added_keeps_the_others_forwarding() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let conf = json!({
        "cniVersion": "1.0.0", "name": "relpm", "type": "portmap", "backend": "iptables",
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
    });
    let mut add = conf.clone();
    add["prevResult"] = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": sandbox.container_path()}],
        "ips": [{"address": "10.45.0.5/24", "interface": 0}]});
    run.add(&plugin("portmap"), "pod", "eth0", &add.to_string());
    let dnat = || iptables_nat(&sandbox, false).matches("-j DNAT").count();
    assert_eq!(dnat(), 1);
    run.ok(&plugin("portmap"), "DEL", "pod", "eth9", &conf.to_string());
    assert_eq!(dnat(), 1, "eth0's DNAT must stay");
    run.ok(&plugin("portmap"), "DEL", "pod", "eth0", &add.to_string());
    assert_eq!(dnat(), 0);
}

/// Defect 2: a range whose start is after its end handed out addresses outside it.
#[test]
fn host_local_refuses_a_range_that_ends_before_it_starts() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let data = sandbox.state_dir().join("hl");
    for (subnet, start, end) in [
        ("10.46.0.0/24", "10.46.0.200", "10.46.0.100"),
        ("fd46::/64", "fd46::9", "fd46::2"),
    ] {
        let conf = json!({"cniVersion": "1.0.0", "name": "hl", "type": "host-local",
            "ipam": {"type": "host-local", "dataDir": data,
                "ranges": [[{"subnet": subnet, "rangeStart": start, "rangeEnd": end}]]}});
        let (code, msg) = run.fails(
            &plugin("host-local"),
            "ADD",
            "c",
            "eth0",
            "",
            &conf.to_string(),
        );
        assert_eq!(code, 999);
        assert!(
            msg.contains(&format!("RangeEnd {end} not in network")),
            "{msg}"
        );
    }
    assert!(reservations(&data.join("hl")).is_empty());
}

fn host_local_conf(data: &Path, range_end: &str) -> String {
    json!({"cniVersion": "1.1.0", "name": "hl", "type": "host-local",
        "ipam": {"type": "host-local", "dataDir": data, "subnet": "10.47.0.0/24",
            "rangeStart": "10.47.0.10", "rangeEnd": range_end}})
    .to_string()
}

/// Defect 3: an empty reservation (a writer killed between create and write) was
/// never matched by any DEL; temporary files of killed writers piled up.
#[test]
fn empty_reservations_and_stale_temp_files_are_reclaimed() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let data = sandbox.state_dir().join("hl");
    let dir = data.join("hl");
    std::fs::create_dir_all(&dir).expect("dir");
    // A one-address range whose only address has an empty reservation.
    std::fs::write(dir.join("10.47.0.10"), "").expect("empty file");
    std::fs::write(dir.join(".rcni-tmp-10.47.0.11"), "c\r\neth0").expect("temp");
    let conf = host_local_conf(&data, "10.47.0.10");
    let result = run.add(&plugin("host-local"), "c1", "eth0", &conf);
    assert_eq!(result["ips"][0]["address"], "10.47.0.10/24");
    assert!(
        !dir.join(".rcni-tmp-10.47.0.11").exists(),
        "a killed writer's temp file"
    );
    assert_eq!(
        reservations(&dir),
        vec![("10.47.0.10".into(), "c1\r\neth0".into())]
    );
    // GC reclaims an empty reservation too.
    run.ok(&plugin("host-local"), "DEL", "c1", "eth0", &conf);
    std::fs::write(dir.join("10.47.0.10"), "").expect("empty file");
    let mut gc: Value = serde_json::from_str(&conf).expect("conf");
    gc["cni.dev/valid-attachments"] = json!([]);
    run.ok(&plugin("host-local"), "GC", "", "", &gc.to_string());
    assert!(!dir.join("10.47.0.10").exists());
}

/// Defect 4: GC never reached IPAM (nor the masquerade) from bridge.
#[test]
fn bridge_gc_reaches_ipam_and_the_masquerade() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let (conf, dir) = bridge_conf(&sandbox, json!({}));
    run.add(&plugin("bridge"), "gone-pod", "eth0", &conf.to_string());
    let other = sandbox.extra_netns();
    let live = cni_testkit::Call {
        command: "ADD",
        container_id: "live-pod",
        netns: &other,
        ifname: "eth0",
        path: common::plugin_dir().to_str().expect("path"),
        ..Default::default()
    };
    let out = sandbox.run_plugin(&plugin("bridge"), &live, &conf.to_string());
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(reservations(&dir).len(), 2);
    assert_eq!(jumps(&sandbox).len(), 2);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "live-pod", "ifname": "eth0"}]);
    run.ok(&plugin("bridge"), "GC", "", "", &gc.to_string());
    let left = reservations(&dir);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].1, "live-pod\r\neth0");
    let left = jumps(&sandbox);
    assert_eq!(left.len(), 1, "{left:#?}");
    assert!(left[0].contains("live-pod"), "{left:#?}");
}

/// Defect 5: `resolvConf: /dev/zero` grew memory until killed; `/dev/urandom` hung.
#[test]
fn resolv_conf_reads_only_small_regular_files() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let data = sandbox.state_dir().join("hl");
    for device in ["/dev/zero", "/dev/urandom"] {
        let conf = json!({"cniVersion": "1.0.0", "name": "hl", "type": "host-local",
            "ipam": {"type": "host-local", "dataDir": data, "subnet": "10.48.0.0/24",
                "resolvConf": device}});
        let start = std::time::Instant::now();
        let (code, msg) = run.fails(
            &plugin("host-local"),
            "ADD",
            "c",
            "eth0",
            "",
            &conf.to_string(),
        );
        assert_eq!(code, 999);
        assert!(msg.contains("not a regular file"), "{msg}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
    assert!(reservations(&data.join("hl")).is_empty());
}

/// Defect 6: a bridge name of 65,536+ characters panicked inside the netlink crate.
#[test]
fn a_huge_bridge_name_is_a_clean_error() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let (conf, dir) = bridge_conf(
        &sandbox,
        json!({"bridge": "b".repeat(70_000), "ipMasq": false}),
    );
    let out = run.call(&plugin("bridge"), "ADD", "c", "eth0", "", &conf.to_string());
    assert_eq!(out.code, 1, "{}", out.stderr);
    let (code, msg, _) = error_of(&out.stdout);
    assert_eq!(code, 999);
    assert!(
        msg.contains("invalid interface name") && msg.len() < 300,
        "{msg}"
    );
    assert!(reservations(&dir).is_empty());
    sandbox.assert_no_leaks();
}

/// Defect 7: with `CNI_NETNS` the plugin's own netns, ADD answered code 8 but kept the
/// reservation and the bridge; DEL answered 8 every time.
#[test]
fn own_netns_add_leaves_nothing_and_del_succeeds() {
    require_root!();
    let sandbox = Sandbox::new();
    let (conf, dir) = bridge_conf(&sandbox, json!({"ipMasq": false}));
    let own = sandbox.host_path();
    let call = |command: &'static str| cni_testkit::Call {
        command,
        container_id: "c",
        netns: &own,
        ifname: "eth0",
        path: common::plugin_dir().to_str().expect("path"),
        ..Default::default()
    };
    let out = sandbox.run_plugin(&plugin("bridge"), &call("ADD"), &conf.to_string());
    assert_eq!(error_of(&out.stdout).0, 8, "{}", out.stdout);
    assert!(reservations(&dir).is_empty());
    assert!(!links(&sandbox, sandbox.host_name()).contains(&"cni-rel".to_string()));
    let out = sandbox.run_plugin(&plugin("bridge"), &call("DEL"), &conf.to_string());
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    sandbox.assert_no_leaks();
}

/// Defect 9: portmap DEL with a corrupt prevResult failed (999) and left the rules.
#[test]
fn portmap_del_with_a_corrupt_prev_result_still_removes_the_rules() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let mut conf = json!({
        "cniVersion": "1.0.0", "name": "relpm", "type": "portmap", "backend": "iptables",
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
    });
    conf["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.45.0.5/24"}]});
    run.add(&plugin("portmap"), "pod", "eth0", &conf.to_string());
    assert!(iptables_nat(&sandbox, false).contains("DNAT"));
    conf["prevResult"] = json!({"cniVersion": "1.0.0", "ips": "garbage"});
    // The netns is gone (as after a node reboot): the container's rules all go.
    let empty_netns = cni_testkit::Call {
        command: "DEL",
        container_id: "pod",
        netns: "",
        ifname: "eth0",
        path: common::plugin_dir().to_str().expect("path"),
        ..Default::default()
    };
    let out = sandbox.run_plugin(&plugin("portmap"), &empty_netns, &conf.to_string());
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    assert!(!iptables_nat(&sandbox, false).contains("CNI-DN-"));
}

/// Defect 11: a symlink at `last_reserved_ip.N` was followed and its target
/// overwritten.
#[test]
fn state_files_are_never_written_through_a_symlink() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let data = sandbox.state_dir().join("hl");
    let dir = data.join("hl");
    std::fs::create_dir_all(&dir).expect("dir");
    let victim = sandbox.state_dir().join("victim");
    std::fs::write(&victim, "precious").expect("victim");
    std::os::unix::fs::symlink(&victim, dir.join("last_reserved_ip.0")).expect("symlink");
    std::os::unix::fs::symlink(&victim, dir.join("10.47.0.10")).expect("symlink");
    let conf = host_local_conf(&data, "10.47.0.20");
    let result = run.add(&plugin("host-local"), "c1", "eth0", &conf);
    assert_eq!(
        result["ips"][0]["address"], "10.47.0.11/24",
        "a symlink holds its name"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious"
    );
    let last = dir.join("last_reserved_ip.0");
    assert!(
        !std::fs::symlink_metadata(&last)
            .expect("last")
            .file_type()
            .is_symlink()
    );
    // Modes as upstream HEAD: files 0600, the network's directory 0700.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("10.47.0.11")), 0o600);
    assert_eq!(mode(&last), 0o600);
    assert_eq!(mode(&dir.join("lock")), 0o600);
}

/// Defect 12: lax configs were accepted (and an L2 bridge made of `ipam: []`).
#[test]
fn wrong_types_and_out_of_range_numbers_are_config_errors() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let (base, dir) = bridge_conf(&sandbox, json!({"ipMasq": false}));
    for (key, value) in [
        ("ipam", json!([])),
        ("dns", json!("8.8.8.8")),
        ("args", json!(5)),
        ("runtimeConfig", json!([1])),
        ("mtu", json!(1_u64 << 40)),
        ("mtu", json!(-1)),
    ] {
        let mut conf = base.clone();
        conf[key] = value.clone();
        let out = run.call(&plugin("bridge"), "ADD", "c", "eth0", "", &conf.to_string());
        assert_eq!(out.code, 1, "{key}: {value}: {out:?}");
        let (code, msg, _) = error_of(&out.stdout);
        assert!(matches!(code, 6 | 7 | 999), "{key}: {code} {msg}");
    }
    let mut whole = base.clone();
    whole["ipam"]["subnet"] = json!("0.0.0.0/0");
    let out = run.call(
        &plugin("bridge"),
        "ADD",
        "c",
        "eth0",
        "",
        &whole.to_string(),
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(reservations(&dir).is_empty());
    assert!(!links(&sandbox, sandbox.host_name()).contains(&"cni-rel".to_string()));
}

/// Hostile state: foreign files and directories in host-local's data directory are
/// neither taken for reservations nor removed by DEL or GC.
#[test]
fn foreign_files_in_the_data_directory_are_left_alone() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let data = sandbox.state_dir().join("hl");
    let dir = data.join("hl");
    std::fs::create_dir_all(dir.join("10.47.0.12")).expect("a directory named like an address");
    std::fs::write(dir.join("notes.txt"), "mine").expect("foreign");
    std::fs::write(dir.join("10.47.0.13.bak"), "c9\r\neth0").expect("foreign");
    let conf = host_local_conf(&data, "10.47.0.20");
    let ips: Vec<String> = (0..3)
        .map(|i| {
            let r = run.add(&plugin("host-local"), &format!("c{i}"), "eth0", &conf);
            r["ips"][0]["address"].as_str().expect("ip").to_string()
        })
        .collect();
    assert!(!ips.contains(&"10.47.0.12/24".to_string()), "{ips:?}");
    let mut gc: Value = serde_json::from_str(&conf).expect("conf");
    gc["cni.dev/valid-attachments"] = json!([]);
    run.ok(&plugin("host-local"), "GC", "", "", &gc.to_string());
    let left: Vec<_> = reservations(&dir)
        .into_iter()
        .filter(|(name, _)| dir.join(name).is_file())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(dir.join("notes.txt").exists() && dir.join("10.47.0.13.bak").exists());
    assert!(dir.join("10.47.0.12").is_dir());
}

/// Hostile input: names that would climb out of a directory or break a line are
/// refused before anything is written.
#[test]
fn path_and_line_breaking_names_are_refused() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let data = sandbox.state_dir().join("hl");
    for name in ["../escape", "a/b", "net\nx", "q\"uote"] {
        let conf = json!({"cniVersion": "1.0.0", "name": name, "type": "host-local",
            "ipam": {"type": "host-local", "dataDir": data, "subnet": "10.49.0.0/24"}});
        let (code, _) = run.fails(
            &plugin("host-local"),
            "ADD",
            "c",
            "eth0",
            "",
            &conf.to_string(),
        );
        assert_eq!(code, 7, "network name {name:?}");
    }
    let conf = host_local_conf(&data, "10.47.0.20");
    for id in ["../c", "c\nd", "c\"d"] {
        let (code, _) = run.fails(&plugin("host-local"), "ADD", id, "eth0", "", &conf);
        assert_eq!(code, 4, "container ID {id:?}");
    }
    for ifname in ["../e", "a/b", "e\nf"] {
        let (code, _) = run.fails(&plugin("host-local"), "ADD", "c", ifname, "", &conf);
        assert_eq!(code, 4, "ifname {ifname:?}");
    }
    let files: Vec<_> = std::fs::read_dir(sandbox.state_dir())
        .expect("state")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(files.len() <= 1, "only the data directory: {files:?}");
}

/// Hostile input: raw firewall text from a config cannot carry a second command into
/// an `iptables-restore` or `nft -f` script.
#[test]
fn firewall_text_from_the_config_cannot_inject_commands() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let base = json!({
        "cniVersion": "1.0.0", "name": "relpm", "type": "portmap",
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
        "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.45.0.5/24"}]},
    });
    for (key, value) in [
        ("conditionsV4", json!(["-s", "10.0.0.0/8\n-F INPUT"])),
        ("nft", json!(["ip saddr 10.0.0.0/8 ; flush ruleset"])),
        ("externalSetMarkChain", json!("MARK -j ACCEPT")),
        ("externalSetMarkChain", json!("X\nCOMMIT")),
    ] {
        let mut conf = base.clone();
        if key == "nft" {
            conf["backend"] = json!("nftables");
            conf["conditionsV4"] = value.clone();
        } else {
            conf[key] = value.clone();
        }
        let (code, msg) = run.fails(
            &plugin("portmap"),
            "ADD",
            "pod",
            "eth0",
            "",
            &conf.to_string(),
        );
        assert_eq!(code, 999, "{key} {value}: {msg}");
        assert!(msg.contains("invalid"), "{msg}");
    }
    let nat = iptables_nat(&sandbox, false);
    assert!(!nat.contains("CNI-"), "{nat}");
}
