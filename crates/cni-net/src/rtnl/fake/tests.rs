//! The fake kernel answers like the kernel: these are the behaviours plugins rely on.

use super::*;
use crate::OperState;
use crate::{
    BridgePort, Handle, KindSpec, LinkChange, LinkSpec, MacvlanMode, Qdisc, QdiscKind, Redirect,
    Route, Scope, Tbf,
};

fn bridge(name: &str) -> LinkSpec<'_> {
    LinkSpec::new(
        name,
        KindSpec::Bridge {
            vlan_filtering: false,
        },
    )
}

#[test]
fn a_veth_pair_spans_namespaces_and_goes_as_one() {
    let fake = FakeKernel::new();
    let kernel = fake.kernel();
    let ctr = fake.add_netns("/fake/ctr");
    let mut host = kernel.host().unwrap();
    host.create_link(&bridge("cni0")).unwrap();
    let br = host.require_link("cni0").unwrap();
    let spec = LinkSpec {
        up: true,
        master: Some(br.index),
        mtu: 1400,
        ..LinkSpec::new(
            "veth1",
            KindSpec::Veth {
                peer: "eth0",
                peer_netns: Some(&ctr),
                peer_mac: Some([2, 0, 0, 0, 0, 9]),
            },
        )
    };
    let echoed = host.create_link(&spec).unwrap().expect("echo");
    assert_eq!(echoed.master, Some(br.index));
    let eth0 = fake.link(&ctr, "eth0").unwrap();
    assert_eq!((eth0.mac.as_str(), eth0.mtu), ("02:00:00:00:00:09", 1400));
    assert_eq!(eth0.kind, LinkKind::Veth);
    // The host end is up, its peer is not: lower layer down until both are.
    let veth = fake.link(&fake.host(), "veth1").unwrap();
    assert_eq!(veth.oper_state, OperState::LowerLayerDown);
    assert_eq!(veth.port, Some(BridgePort::default()));
    let mut container = kernel.netlink(&ctr).unwrap();
    container.set_link_up(eth0.index, true).unwrap();
    assert_eq!(
        host.link_by_index(veth.index).unwrap().unwrap().oper_state,
        OperState::Up
    );

    // Same names again: EEXIST, and nothing changes.
    let before = fake.snapshot();
    assert!(host.create_link(&spec).unwrap_err().already_exists());
    assert_eq!(fake.snapshot(), before);

    container.delete_link(eth0.index).unwrap();
    assert!(
        fake.link(&fake.host(), "veth1").is_none(),
        "the peer goes too"
    );
    let e = container.delete_link(eth0.index).unwrap_err();
    assert!(e.already_gone(), "{e}");
}

#[test]
fn addresses_bring_connected_routes_and_gateways_must_be_reachable() {
    let fake = FakeKernel::new();
    let kernel = fake.kernel();
    let mut host = kernel.host().unwrap();
    host.create_link(&bridge("br0")).unwrap();
    let br = host.require_link("br0").unwrap();
    let address = "10.1.0.1/16".parse().unwrap();
    host.add_address(br.index, address, false).unwrap();
    assert!(
        host.add_address(br.index, address, false)
            .unwrap_err()
            .already_exists()
    );
    let via = |gw: &str| {
        Route::new(
            "0.0.0.0/0".parse().unwrap(),
            Some(gw.parse().unwrap()),
            br.index,
        )
    };
    // Down: no connected route, so no gateway is reachable.
    assert_eq!(
        host.add_route(&via("10.1.0.254")).unwrap_err().errno(),
        Some(ENETUNREACH)
    );
    host.set_link_up(br.index, true).unwrap();
    let routes = host.routes(Family::V4).unwrap();
    assert_eq!(routes.len(), 1);
    assert!(routes[0].kernel && routes[0].scope == Scope::Link);
    host.add_route(&via("10.1.0.254")).unwrap();
    assert!(
        host.add_route(&via("10.1.0.254"))
            .unwrap_err()
            .already_exists()
    );
    assert_eq!(
        host.route_get("10.1.3.3".parse().unwrap()).unwrap(),
        Some(br.index)
    );
    // The connected route is deleted whatever its origin.
    let mut connected = Route::new("10.1.0.0/16".parse().unwrap(), None, br.index);
    connected.scope = Scope::Link;
    host.del_route(&connected).unwrap();
    assert!(host.del_route(&connected).unwrap_err().already_gone());
    host.del_address(br.index, address).unwrap();
    assert!(
        host.del_address(br.index, address)
            .unwrap_err()
            .already_gone()
    );
    assert_eq!(host.addresses(br.index).unwrap(), vec![]);
}

#[test]
fn one_change_moves_and_renames_even_an_up_link() {
    let fake = FakeKernel::new();
    let kernel = fake.kernel();
    let ctr = fake.add_netns("/fake/ctr");
    let mut host = kernel.host().unwrap();
    host.create_link(&LinkSpec::new("dev0", KindSpec::Dummy))
        .unwrap();
    let dev = host.require_link("dev0").unwrap();
    host.change_link(
        dev.index,
        &LinkChange {
            up: Some(true),
            alias: Some("orig"),
            mtu: Some(9000),
            ..Default::default()
        },
    )
    .unwrap();
    // Up or not: this kernel (6.18) renames running links.
    let rename = LinkChange {
        name: Some("other"),
        ..Default::default()
    };
    host.change_link(dev.index, &rename).unwrap();
    assert!(fake.link(&fake.host(), "other").is_some());
    host.change_link(
        dev.index,
        &LinkChange {
            name: Some("net1"),
            netns: Some(&ctr),
            ..Default::default()
        },
    )
    .unwrap();
    let moved = fake.link(&ctr, "net1").unwrap();
    assert_eq!(
        (moved.alias.as_str(), moved.mtu, moved.up),
        ("orig", 9000, false)
    );
    assert!(fake.link(&fake.host(), "dev0").is_none());
}

#[test]
fn missing_kinds_and_missing_parents_are_the_kernels_errors() {
    let fake = FakeKernel::new();
    fake.without_kinds(&[LinkKind::Ipvlan]);
    let mut host = fake.kernel().host().unwrap();
    let e = host
        .create_link(&LinkSpec {
            parent: Some(1),
            ..LinkSpec::new(
                "ipv0",
                KindSpec::Ipvlan {
                    mode: crate::IpvlanMode::L2,
                },
            )
        })
        .unwrap_err();
    assert!(e.unsupported_by_kernel(), "{e}");
    let e = host
        .create_link(&LinkSpec {
            parent: Some(77),
            ..LinkSpec::new(
                "mv0",
                KindSpec::Macvlan {
                    mode: MacvlanMode::Bridge,
                    bcqueuelen: None,
                },
            )
        })
        .unwrap_err();
    assert!(e.already_gone(), "an unknown parent is ENODEV: {e}");
    host.create_link(&LinkSpec::new("lower", KindSpec::Dummy))
        .unwrap();
    let lower = host.require_link("lower").unwrap();
    let macvlan = |name, mode| LinkSpec {
        parent: Some(lower.index),
        ..LinkSpec::new(
            name,
            KindSpec::Macvlan {
                mode,
                bcqueuelen: None,
            },
        )
    };
    host.create_link(&macvlan("mv0", MacvlanMode::Bridge))
        .unwrap();
    let e = host
        .create_link(&macvlan("mv1", MacvlanMode::Passthru))
        .unwrap_err();
    assert_eq!(
        e.errno(),
        Some(EBUSY),
        "passthru needs the lower device alone"
    );
}

#[test]
fn failures_are_injected_by_request_number_and_by_kind() {
    let fake = FakeKernel::new();
    let mut host = fake.kernel().host().unwrap();
    fake.fail_op(Op::NewAddress, 2, ENOSPC);
    host.create_link(&LinkSpec::new("d0", KindSpec::Dummy))
        .unwrap();
    let d0 = host.require_link("d0").unwrap();
    host.add_address(d0.index, "10.0.0.1/24".parse().unwrap(), false)
        .unwrap();
    let e = host
        .add_address(d0.index, "10.0.0.2/24".parse().unwrap(), false)
        .unwrap_err();
    assert_eq!(e.errno(), Some(ENOSPC));
    assert_eq!(
        host.addresses(d0.index).unwrap().len(),
        1,
        "a failed request changes nothing"
    );
    let count = fake.requests();
    fake.fail_request(1, EBUSY);
    assert!(host.links().is_err());
    assert!(host.links().is_ok());
    assert_eq!(fake.requests(), count + 2);
}

#[test]
fn rules_qdiscs_and_redirects_keep_state() {
    let fake = FakeKernel::new();
    let mut host = fake.kernel().host().unwrap();
    let rule = Rule::from_source("10.0.0.5/32".parse().unwrap(), 100);
    host.add_rule(&rule).unwrap();
    let rules = host.rules(Family::V4).unwrap();
    let added = rules.iter().find(|r| r.table == 100).unwrap();
    assert_eq!(
        added.priority,
        Some(32765),
        "just above main, as the kernel picks"
    );
    host.del_rule(&rule).unwrap();
    assert!(host.del_rule(&rule).unwrap_err().already_gone());

    host.create_link(&LinkSpec::new("ifb0", KindSpec::Ifb))
        .unwrap();
    host.create_link(&LinkSpec::new("d0", KindSpec::Dummy))
        .unwrap();
    let ifb = host.require_link("ifb0").unwrap();
    let d0 = host.require_link("d0").unwrap();
    let ingress = Qdisc {
        index: d0.index,
        handle: Handle::new(0xffff, 0),
        parent: Handle::INGRESS,
        kind: QdiscKind::Ingress,
    };
    let redirect = Redirect {
        index: d0.index,
        parent: Handle::new(0xffff, 0),
        to: ifb.index,
    };
    assert!(host.add_redirect(&redirect).is_err(), "no qdisc yet");
    host.add_qdisc(&ingress).unwrap();
    assert!(host.add_qdisc(&ingress).unwrap_err().already_exists());
    host.add_redirect(&redirect).unwrap();
    let redirect = Redirect {
        parent: Handle::INGRESS,
        ..redirect
    };
    let tbf = Qdisc {
        index: ifb.index,
        handle: Handle::new(1, 0),
        parent: Handle::ROOT,
        kind: QdiscKind::Tbf(Tbf {
            rate: 125_000,
            limit: 3000,
            buffer: 1000,
        }),
    };
    host.add_qdisc(&tbf).unwrap();
    assert_eq!(host.qdiscs(ifb.index).unwrap(), vec![tbf]);
    assert_eq!(fake.redirects(&fake.host()), vec![redirect]);
    host.delete_link(ifb.index).unwrap();
    assert!(fake.redirects(&fake.host()).is_empty(), "the target went");
    host.del_qdisc(d0.index, Handle::INGRESS).unwrap();
    assert!(
        host.del_qdisc(d0.index, Handle::INGRESS)
            .unwrap_err()
            .already_gone()
    );
}

#[test]
fn bridge_vlans_and_sysctls_are_kept_per_namespace() {
    let fake = FakeKernel::new();
    let kernel = fake.kernel();
    let ctr = fake.add_netns("/fake/ctr");
    let mut host = kernel.host().unwrap();
    host.create_link(&bridge("br0")).unwrap();
    let br = host.require_link("br0").unwrap();
    host.create_link(&LinkSpec {
        master: Some(br.index),
        ..LinkSpec::new("d0", KindSpec::Dummy)
    })
    .unwrap();
    let d0 = host.require_link("d0").unwrap();
    host.bridge_vlan_del(d0.index, 1).unwrap();
    host.bridge_vlan_add(d0.index, 100, true, true).unwrap();
    host.bridge_vlan_add(d0.index, 200, false, false).unwrap();
    assert_eq!(
        fake.bridge_vlans(&fake.host(), d0.index),
        vec![(100, true, true), (200, false, false)]
    );
    kernel
        .sysctl_write(Some(&ctr), "net.ipv4.conf.eth0.arp_notify", "1")
        .unwrap();
    assert_eq!(
        fake.sysctl(&ctr, "net/ipv4/conf/eth0/arp_notify")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        fake.sysctl(&fake.host(), "net/ipv4/conf/eth0/arp_notify"),
        None
    );
    assert!(kernel.require_firewall().is_err());
    let tap = crate::TapSpec {
        name: "tap0",
        ..Default::default()
    };
    kernel.create_tap(&ctr, &tap).unwrap();
    assert_eq!(fake.link(&ctr, "tap0").map(|l| l.kind), Some(LinkKind::Tun));
    assert!(kernel.create_tap(&ctr, &tap).unwrap_err().already_exists());
    fake.remove_netns("/fake/ctr");
    assert!(kernel.open_netns("/fake/ctr").unwrap_err().already_gone());
}
