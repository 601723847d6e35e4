//! tuning on the fake kernel: every setting, the backup file, DEL's restore, the
//! validation errors, a failed ADD that undoes itself, GC and STATUS.

use cni_net::FakeKernel;
use cni_net::rtnl::fake::Op;
use serde_json::{Value, json};

use super::{Tuning, sysctl_name};
use crate::pkg::testing::{FakeIpam, add_veth, run};

const CTR: &str = "/fake/ctr";

/// A fake kernel whose container has `eth0` (a veth end).
fn kernel() -> FakeKernel {
    let fake = FakeKernel::new();
    let ctr = fake.add_netns(CTR);
    add_veth(&fake, &ctr, "eth0", "peer0");
    fake
}

fn eth0(fake: &FakeKernel) -> cni_net::Link {
    fake.link(&fake.kernel().open_netns(CTR).unwrap(), "eth0")
        .expect("eth0")
}

fn prev() -> Value {
    json!({"cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "aa:aa:aa:aa:aa:aa", "sandbox": CTR}],
        "ips": [{"address": "10.1.0.2/24", "interface": 0}]})
}

fn conf(dir: &std::path::Path, extra: Value) -> String {
    let mut conf = json!({"cniVersion": "1.1.0", "name": "tunenet", "type": "tuning",
        "dataDir": dir, "prevResult": prev()});
    for (k, v) in extra.as_object().unwrap() {
        conf[k] = v.clone();
    }
    conf.to_string()
}

fn plugin(allowlist: Option<&str>) -> Tuning {
    let path = match allowlist {
        Some(text) => {
            let dir = tempfile::tempdir().unwrap().keep();
            let path = dir.join("allowlist.conf");
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        }
        None => "/nonexistent/allowlist.conf".into(),
    };
    Tuning {
        allowlist: Box::leak(path.into_boxed_str()),
    }
}

#[test]
fn add_sets_everything_keeps_a_backup_and_del_restores_it() {
    let fake = kernel();
    let kernel = fake.kernel();
    let dir = tempfile::tempdir().unwrap();
    let before = eth0(&fake);
    let c = conf(
        dir.path(),
        json!({"sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1", "net/ipv6/conf/eth0/accept_ra": "0"},
            "mac": "02:00:00:00:00:01", "mtu": 1400, "promisc": true, "allmulti": true, "txQLen": 50}),
    );
    let tuning = plugin(None);
    let ipam = FakeIpam::default();
    let (code, out) = run(&tuning, &kernel, &ipam, "ADD", CTR, &c);
    assert_eq!(code, 0, "{out}");
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["interfaces"][0]["mac"], "02:00:00:00:00:01");

    let ctr = kernel.open_netns(CTR).unwrap();
    assert_eq!(
        fake.sysctl(&ctr, "net/ipv4/conf/eth0/arp_notify")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        fake.sysctl(&ctr, "net/ipv6/conf/eth0/accept_ra").as_deref(),
        Some("0")
    );
    let link = eth0(&fake);
    assert_eq!(
        (
            link.mac.as_str(),
            link.mtu,
            link.promisc,
            link.allmulti,
            link.txqlen
        ),
        ("02:00:00:00:00:01", 1400, true, true, 50)
    );
    let backup = dir.path().join("ctr-1_eth0.json");
    let text = std::fs::read_to_string(&backup).unwrap();
    assert_eq!(
        text,
        format!(
            "{{\n \"mac\": \"{}\",\n \"promisc\": false,\n \"mtu\": {},\n \"allmulti\": false,\n \"txQLen\": {},\n \"network\": \"tunenet\"\n}}",
            before.mac, before.mtu, before.txqlen
        )
    );

    let mut with_prev: Value = serde_json::from_str(&c).unwrap();
    with_prev["prevResult"] = result;
    let (code, out) = run(
        &tuning,
        &kernel,
        &ipam,
        "CHECK",
        CTR,
        &with_prev.to_string(),
    );
    assert_eq!((code, out.as_str()), (0, ""));
    with_prev["mtu"] = json!(1300);
    let (code, out) = run(
        &tuning,
        &kernel,
        &ipam,
        "CHECK",
        CTR,
        &with_prev.to_string(),
    );
    assert_eq!(code, 1);
    assert!(out.contains("configured MTU of eth0 is 1300"), "{out}");

    let (code, out) = run(&tuning, &kernel, &ipam, "DEL", CTR, &c);
    assert_eq!((code, out.as_str()), (0, ""));
    let link = eth0(&fake);
    assert_eq!(
        (link.mac, link.mtu, link.promisc, link.allmulti, link.txqlen),
        (
            before.mac,
            before.mtu,
            before.promisc,
            before.allmulti,
            before.txqlen
        )
    );
    assert!(!backup.exists());
    let (code, _) = run(&tuning, &kernel, &ipam, "DEL", CTR, &c);
    assert_eq!(code, 0);
}

#[test]
fn args_cni_override_the_config_and_runtime_config_and_merge_sysctls() {
    let fake = kernel();
    let kernel = fake.kernel();
    let dir = tempfile::tempdir().unwrap();
    let c = conf(
        dir.path(),
        json!({"sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}, "mac": "02:00:00:00:00:01",
            "mtu": 1400, "runtimeConfig": {"mac": "02:00:00:00:00:02"},
            "args": {"cni": {"sysctl": {"net.ipv4.conf.eth0.arp_accept": "1"}, "mtu": 1300}}}),
    );
    let (code, out) = run(&plugin(None), &kernel, &FakeIpam::default(), "ADD", CTR, &c);
    assert_eq!(code, 0, "{out}");
    let link = eth0(&fake);
    // runtimeConfig beats the config; args.cni beats both.
    assert_eq!((link.mac.as_str(), link.mtu), ("02:00:00:00:00:02", 1300));
    let ctr = kernel.open_netns(CTR).unwrap();
    for key in ["arp_notify", "arp_accept"] {
        let name = format!("net/ipv4/conf/eth0/{key}");
        assert_eq!(fake.sysctl(&ctr, &name).as_deref(), Some("1"), "{key}");
    }
    let c = conf(
        dir.path(),
        json!({"mac": "02:00:00:00:00:01", "runtimeConfig": {"mac": "02:00:00:00:00:02"},
            "args": {"cni": {"mac": "02:00:00:00:00:03"}}}),
    );
    let fake = self::kernel();
    let (code, out) = run(
        &plugin(None),
        &fake.kernel(),
        &FakeIpam::default(),
        "ADD",
        CTR,
        &c,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(eth0(&fake).mac, "02:00:00:00:00:03");
}

#[test]
fn bad_configs_fail_cleanly_before_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let dup = r#"{"cniVersion":"1.1.0","name":"n","type":"tuning","dataDir":"DIR",
        "sysctl":{"net.ipv4.conf.eth0.arp_notify":"1","net.ipv4.conf.eth0.arp_notify":"0"},
        "prevResult":PREV}"#
        .replace("DIR", &dir.path().display().to_string())
        .replace("PREV", &prev().to_string());
    let cases: Vec<(String, &str)> = vec![
        (dup, "duplicated sysctl keys are not allowed"),
        (
            conf(dir.path(), json!({"sysctl": {"kernel.hostname": "x"}})),
            "invalid net sysctl key: \\\"kernel.hostname",
        ),
        (
            conf(
                dir.path(),
                json!({"sysctl": {"net/../kernel/hostname": "x"}}),
            ),
            "invalid net sysctl key",
        ),
        (
            conf(dir.path(), json!({"mac": "not-a-mac"})),
            "invalid args not-a-mac for MAC addr",
        ),
        (conf(dir.path(), json!({"mtu": -5})), "invalid mtu -5"),
        (
            conf(dir.path(), json!({"prevResult": null, "mtu": 1400})),
            "Required prevResult missing",
        ),
    ];
    for (c, message) in &cases {
        let fake = kernel();
        let before = fake.snapshot();
        let (code, out) = run(
            &plugin(None),
            &fake.kernel(),
            &FakeIpam::default(),
            "ADD",
            CTR,
            c,
        );
        assert_eq!(code, 1, "{c}: {out}");
        assert!(out.contains(message), "{c}: {out} should say {message:?}");
        assert_eq!(fake.snapshot(), before, "{c} changed the kernel");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

#[test]
fn the_allowlist_admits_only_matching_keys() {
    let dir = tempfile::tempdir().unwrap();
    let allowlist = "^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]*$\n\n^net\\.ipv4\\.ip_forward$\n";
    let tuning = plugin(Some(allowlist));
    let fake = kernel();
    let ok = conf(
        dir.path(),
        json!({"sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}}),
    );
    let (code, out) = run(
        &tuning,
        &fake.kernel(),
        &FakeIpam::default(),
        "ADD",
        CTR,
        &ok,
    );
    assert_eq!(code, 0, "{out}");
    let refused = conf(
        dir.path(),
        json!({"sysctl": {"net.core.somaxconn": "1024"}}),
    );
    let before = fake.snapshot();
    let (code, out) = run(
        &tuning,
        &fake.kernel(),
        &FakeIpam::default(),
        "ADD",
        CTR,
        &refused,
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("Sysctl net.core.somaxconn is not allowed"),
        "{out}"
    );
    assert_eq!(fake.snapshot(), before);

    let broken = plugin(Some("net\\.(\n"));
    let call = |plugin: &Tuning, command: &str| {
        run(
            plugin,
            &fake.kernel(),
            &FakeIpam::default(),
            command,
            CTR,
            &ok,
        )
    };
    let (code, out) = call(&broken, "ADD");
    assert_eq!(code, 1);
    assert!(out.contains("invalid regular expression"), "{out}");
    // STATUS says so before any ADD has to fail.
    let (code, out) = call(&broken, "STATUS");
    assert_eq!(code, 1);
    assert!(out.contains("invalid regular expression"), "{out}");
    let (code, _) = call(&tuning, "STATUS");
    assert_eq!(code, 0);
}

#[test]
fn a_refused_link_change_puts_back_the_sysctls_and_the_link_and_keeps_no_backup() {
    let fake = kernel();
    let kernel = fake.kernel();
    let ctr = kernel.open_netns(CTR).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let before_link = eth0(&fake);
    let c = conf(
        dir.path(),
        json!({"sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}, "mtu": 1400}),
    );
    // Link changes are RTM_NEWLINK requests without NLM_F_CREATE.
    fake.fail_op(Op::NewLink, 1, 22);
    let (code, out) = run(&plugin(None), &kernel, &FakeIpam::default(), "ADD", CTR, &c);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        fake.sysctl(&ctr, "net/ipv4/conf/eth0/arp_notify")
            .as_deref(),
        Some("0")
    );
    assert_eq!(eth0(&fake).mtu, before_link.mtu);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn del_reports_a_failed_restore_keeps_the_backup_and_forgets_it_once_the_netns_is_gone() {
    let fake = kernel();
    let kernel = fake.kernel();
    let dir = tempfile::tempdir().unwrap();
    let c = conf(dir.path(), json!({"mtu": 1400}));
    let tuning = plugin(None);
    let ipam = FakeIpam::default();
    assert_eq!(run(&tuning, &kernel, &ipam, "ADD", CTR, &c).0, 0);
    let backup = dir.path().join("ctr-1_eth0.json");
    fake.fail_op(Op::NewLink, 1, 16);
    let (code, out) = run(&tuning, &kernel, &ipam, "DEL", CTR, &c);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("failed to restore eth0"), "{out}");
    assert!(backup.exists());
    fake.remove_netns(CTR);
    let (code, out) = run(&tuning, &kernel, &ipam, "DEL", CTR, &c);
    assert_eq!((code, out.as_str()), (0, ""));
    assert!(!backup.exists());
}

#[test]
fn gc_removes_only_this_networks_stale_backups() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("gone_eth0.json", r#"{"mtu": 1500, "network": "tunenet"}"#);
    write("live_eth0.json", r#"{"mtu": 1500, "network": "tunenet"}"#);
    write("other_eth0.json", r#"{"mtu": 1500, "network": "othernet"}"#);
    write("go_eth0.json", "{\n \"mtu\": 1500\n}");
    let c = conf(
        dir.path(),
        json!({"cni.dev/valid-attachments": [{"containerID": "live", "ifname": "eth0"}]}),
    );
    let fake = kernel();
    let (code, out) = run(
        &plugin(None),
        &fake.kernel(),
        &FakeIpam::default(),
        "GC",
        CTR,
        &c,
    );
    assert_eq!((code, out.as_str()), (0, ""));
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["go_eth0.json", "live_eth0.json", "other_eth0.json"]);
}

#[test]
fn sysctl_names_follow_upstream_and_keep_dotted_interface_names() {
    let ok = |key: &str, ifname: &str| sysctl_name(key, ifname).unwrap();
    assert_eq!(
        ok("net.ipv4.conf.IFNAME.arp_notify", "eth0"),
        "net/ipv4/conf/eth0/arp_notify"
    );
    assert_eq!(
        ok("net.ipv4.conf.IFNAME.arp_notify", "eth0.100"),
        "net/ipv4/conf/eth0.100/arp_notify"
    );
    assert_eq!(
        ok("net.ipv4.conf.eth0.100.arp_notify", "eth0.100"),
        "net/ipv4/conf/eth0.100/arp_notify"
    );
    assert_eq!(
        ok("net/ipv4/conf/eth0.100/arp_notify", "eth0"),
        "net/ipv4/conf/eth0.100/arp_notify"
    );
    for bad in [
        "kernel.x",
        "net",
        "net..x",
        "net/./x",
        "net/../kernel/x",
        "/net/x",
    ] {
        assert!(sysctl_name(bad, "eth0").is_err(), "{bad}");
    }
}

#[test]
fn a_repeated_add_keeps_the_values_from_before_the_first() {
    let fake = kernel();
    let kernel = fake.kernel();
    let dir = tempfile::tempdir().unwrap();
    let before = eth0(&fake);
    let tuning = plugin(None);
    let ipam = FakeIpam::default();
    let c = conf(dir.path(), json!({"mtu": 1400}));
    assert_eq!(run(&tuning, &kernel, &ipam, "ADD", CTR, &c).0, 0);
    let c = conf(dir.path(), json!({"mtu": 1300, "txQLen": 5}));
    assert_eq!(run(&tuning, &kernel, &ipam, "ADD", CTR, &c).0, 0);
    assert_eq!((eth0(&fake).mtu, eth0(&fake).txqlen), (1300, 5));
    assert_eq!(run(&tuning, &kernel, &ipam, "DEL", CTR, &c).0, 0);
    let after = eth0(&fake);
    assert_eq!((after.mtu, after.txqlen), (before.mtu, before.txqlen));
}
