//! cni-net's verbs against the real kernel, read back with `ip` and `tc`: what the
//! fake kernel answers must be what this kernel does.

use cni_net::{
    Family, Handle, Kernel, KindSpec, LinkChange, LinkKind, LinkSpec, MacvlanMode, Qdisc,
    QdiscKind, Redirect, Rule, TapSpec, Tbf,
};
use cni_testkit::query::ip_json;
use cni_testkit::{Sandbox, require_root};

#[test]
fn tap_devices_through_the_ioctls() {
    require_root!();
    let sandbox = Sandbox::new();
    let kernel = Kernel::real();
    let spec = TapSpec {
        name: "tap7",
        multi_queue: true,
        vnet_hdr: true,
        owner: Some(1000),
        group: Some(1001),
        selinux_context: None,
    };
    kernel.create_tap(&sandbox.container, &spec).expect("tap");
    let link = &ip_json(
        &sandbox,
        sandbox.container_name(),
        &["-d", "link", "show", "tap7"],
    )[0];
    let info = &link["linkinfo"]["info_data"];
    assert_eq!(link["linkinfo"]["info_kind"], "tun", "{link}");
    assert_eq!(info["type"], "tap", "{link}");
    assert_eq!(info["pi"], false, "{link}");
    assert_eq!(info["vnet_hdr"], true, "{link}");
    assert_eq!(info["multi_queue"], true, "{link}");
    assert_eq!(info["persist"], true, "{link}");
    // `ip` shows a uid or gid by name when it has one.
    let named = |id: u32, file: &str| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .find(|l| l.split(':').nth(2) == Some(&id.to_string()))
            .and_then(|l| l.split(':').next().map(str::to_string))
    };
    let is = |shown: &serde_json::Value, id: u32, file: &str| {
        *shown == id || shown.as_str().is_some() && shown.as_str() == named(id, file).as_deref()
    };
    assert!(is(&info["user"], 1000, "/etc/passwd"), "{link}");
    assert!(is(&info["group"], 1001, "/etc/group"), "{link}");
    // The same name again is refused (TUNSETIFF alone would attach to it).
    let e = kernel.create_tap(&sandbox.container, &spec).unwrap_err();
    assert!(e.already_exists(), "{e}");
    let mut netlink = kernel.netlink(&sandbox.container).expect("socket");
    let tap = netlink.require_link("tap7").expect("tap link");
    assert_eq!(tap.kind, LinkKind::Tun);
    netlink.delete_link(tap.index).expect("delete");
    sandbox.assert_no_leaks();
}

#[test]
fn macvlan_in_another_namespace_and_one_request_changes() {
    require_root!();
    let sandbox = Sandbox::new();
    let kernel = Kernel::real();
    let mut host = kernel.host_in(&sandbox.host).expect("host socket");
    host.create_link(&LinkSpec::new("lower0", KindSpec::Dummy))
        .or_else(|e| {
            // No dummy module here: a veth end serves as the lower device.
            assert!(e.unsupported_by_kernel(), "{e}");
            host.create_link(&LinkSpec::new(
                "lower0",
                KindSpec::Veth {
                    peer: "lower1",
                    peer_netns: None,
                    peer_mac: None,
                },
            ))
        })
        .expect("lower device");
    let lower = host.require_link("lower0").expect("lower");
    let spec = LinkSpec {
        parent: Some(lower.index),
        netns: Some(&sandbox.container),
        mtu: 1400,
        mac: Some([0x02, 0, 0, 0, 0, 0x42]),
        ..LinkSpec::new(
            "mv0",
            KindSpec::Macvlan {
                mode: MacvlanMode::Private,
                bcqueuelen: None,
            },
        )
    };
    host.create_link(&spec).expect("macvlan");
    let mut ctr = kernel.netlink(&sandbox.container).expect("socket");
    let mv = ctr.require_link("mv0").expect("in the container");
    assert_eq!(
        (mv.kind.clone(), mv.mtu, mv.mac.as_str()),
        (LinkKind::Macvlan, 1400, "02:00:00:00:00:42")
    );
    let shown = &ip_json(
        &sandbox,
        sandbox.container_name(),
        &["-d", "link", "show", "mv0"],
    )[0];
    assert_eq!(shown["linkinfo"]["info_data"]["mode"], "private", "{shown}");
    ctr.change_link(
        mv.index,
        &LinkChange {
            name: Some("net1"),
            alias: Some("mv0"),
            txqlen: Some(77),
            allmulti: Some(true),
            ..Default::default()
        },
    )
    .expect("rename + attributes, down");
    ctr.set_link_up(mv.index, true).expect("up");
    let net1 = ctr.require_link("net1").expect("renamed");
    assert_eq!(
        (net1.alias.as_str(), net1.txqlen, net1.allmulti, net1.up),
        ("mv0", 77, true, true)
    );
}

#[test]
fn qdiscs_redirects_and_rules_as_tc_and_ip_show_them() {
    require_root!();
    let sandbox = Sandbox::new();
    let kernel = Kernel::real();
    let mut host = kernel.host_in(&sandbox.host).expect("socket");
    host.create_link(&LinkSpec::new("ifb-t0", KindSpec::Ifb))
        .expect("ifb");
    host.create_link(&LinkSpec::new(
        "veth-t0",
        KindSpec::Veth {
            peer: "veth-t1",
            peer_netns: None,
            peer_mac: None,
        },
    ))
    .expect("veth");
    let ifb = host.require_link("ifb-t0").expect("ifb");
    let veth = host.require_link("veth-t0").expect("veth");
    let tbf = Qdisc {
        index: ifb.index,
        handle: Handle::new(1, 0),
        parent: Handle::ROOT,
        kind: QdiscKind::Tbf(Tbf {
            rate: 125_000,
            limit: 25_000,
            buffer: 200_000,
        }),
    };
    host.add_qdisc(&tbf).expect("tbf");
    let ingress = Qdisc {
        index: veth.index,
        handle: Handle::new(0xffff, 0),
        parent: Handle::INGRESS,
        kind: QdiscKind::Ingress,
    };
    host.add_qdisc(&ingress).expect("ingress");
    assert!(host.add_qdisc(&ingress).unwrap_err().already_exists());
    host.add_redirect(&Redirect {
        index: veth.index,
        parent: Handle::new(0xffff, 0),
        to: ifb.index,
    })
    .expect("redirect");
    let shown = std::process::Command::new("tc")
        .args(["-n", sandbox.host_name(), "qdisc", "show", "dev", "ifb-t0"])
        .output()
        .expect("tc");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("qdisc tbf 1: root") && shown.contains("rate 1Mbit"),
        "{shown}"
    );
    let read = host.qdiscs(ifb.index).expect("dump");
    assert_eq!(read.len(), 1);
    assert!(
        matches!(&read[0].kind, QdiscKind::Tbf(t) if t.rate == 125_000 && t.limit == 25_000),
        "{read:?}"
    );
    let filters = std::process::Command::new("tc")
        .args([
            "-n",
            sandbox.host_name(),
            "filter",
            "show",
            "dev",
            "veth-t0",
            "ingress",
        ])
        .output()
        .expect("tc");
    let filters = String::from_utf8_lossy(&filters.stdout);
    assert!(
        filters.contains("u32") && filters.contains("Redirect to device ifb-t0"),
        "{filters}"
    );
    host.del_qdisc(veth.index, Handle::INGRESS).expect("delete");
    assert!(
        host.del_qdisc(veth.index, Handle::INGRESS)
            .unwrap_err()
            .already_gone()
    );

    let rule = Rule {
        priority: Some(100),
        ..Rule::from_source("10.9.0.5/32".parse().expect("net"), 101)
    };
    host.add_rule(&rule).expect("rule");
    assert!(host.add_rule(&rule).unwrap_err().already_exists());
    let rules = sandbox.ip(sandbox.host_name(), &["rule", "show"]);
    assert!(rules.contains("100:\tfrom 10.9.0.5 lookup 101"), "{rules}");
    assert!(host.rules(Family::V4).expect("dump").contains(&rule));
    host.del_rule(&rule).expect("delete");
    assert!(host.del_rule(&rule).unwrap_err().already_gone());
}

#[test]
fn kinds_this_kernel_lacks_say_so() {
    require_root!();
    let sandbox = Sandbox::new();
    let mut host = Kernel::real().host_in(&sandbox.host).expect("socket");
    for (kind, spec) in [
        (LinkKind::Vrf, KindSpec::Vrf { table: 10 }),
        (LinkKind::Dummy, KindSpec::Dummy),
    ] {
        match host.create_link(&LinkSpec::new("k0", spec)) {
            Ok(_) => {
                eprintln!("this kernel has {}", kind.module());
                let link = host.require_link("k0").expect("made");
                host.delete_link(link.index).expect("delete");
            }
            Err(e) => {
                assert!(e.unsupported_by_kernel(), "{e}");
                eprintln!("skipped: no {} module in this kernel ({e})", kind.module());
            }
        }
    }
}
