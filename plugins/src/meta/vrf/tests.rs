//! vrf on the fake kernel (this machine's kernel has no VRF module): the VRF and
//! its table, enslaving with the IPv6 addresses and the gateway routes (ECMP too)
//! kept, the errors, and DEL that removes the VRF with its last interface.

use cni_net::rtnl::fake::Op;
use cni_net::{FakeKernel, KindData, KindSpec, LinkKind, LinkSpec, NextHop, Route};
use serde_json::{Value, json};

use super::Vrf;
use crate::pkg::testing::{FakeIpam, add_veth, run_for};

const CTR: &str = "/fake/ctr";

/// A container with `eth0` and `net1`, each with an IPv4 and a global IPv6 address,
/// and a gateway route each: eth0 a default route, net1 an ECMP one.
fn kernel() -> FakeKernel {
    let fake = FakeKernel::new();
    let ctr = fake.add_netns(CTR);
    let mut netlink = fake.kernel().netlink(&ctr).unwrap();
    for (name, peer, v4, v6) in [
        ("eth0", "p0", "10.1.0.2/24", "fd01::2/64"),
        ("net1", "p1", "10.2.0.2/24", "fd02::2/64"),
    ] {
        let link = add_veth(&fake, &ctr, name, peer);
        netlink.set_link_up(link.index, true).unwrap();
        for a in [v4, v6] {
            netlink
                .add_address(link.index, a.parse().unwrap(), true)
                .unwrap();
        }
    }
    let eth0 = netlink.require_link("eth0").unwrap();
    let net1 = netlink.require_link("net1").unwrap();
    netlink
        .add_route(&Route::new(
            "0.0.0.0/0".parse().unwrap(),
            Some("10.1.0.1".parse().unwrap()),
            eth0.index,
        ))
        .unwrap();
    netlink
        .add_route(&Route {
            oif: None,
            gw: None,
            nexthops: vec![
                NextHop {
                    gw: Some("fd02::1".parse().unwrap()),
                    oif: net1.index,
                },
                NextHop {
                    gw: Some("fd02::fe".parse().unwrap()),
                    oif: net1.index,
                },
            ],
            ..Route::new("::/0".parse().unwrap(), None, net1.index)
        })
        .unwrap();
    fake
}

fn conf(extra: Value) -> String {
    let mut conf = json!({"cniVersion": "1.1.0", "name": "vrfnet", "type": "vrf", "vrfname": "blue",
        "prevResult": {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "sandbox": CTR}],
            "ips": [{"address": "10.1.0.2/24", "interface": 0}]}});
    for (k, v) in extra.as_object().unwrap() {
        conf[k] = v.clone();
    }
    conf.to_string()
}

fn call(fake: &FakeKernel, command: &str, ifname: &str, c: &str) -> (i32, String) {
    run_for(
        &Vrf,
        &fake.kernel(),
        &FakeIpam::default(),
        command,
        CTR,
        ifname,
        c,
    )
}

fn link(fake: &FakeKernel, name: &str) -> Option<cni_net::Link> {
    fake.link(&fake.kernel().open_netns(CTR).unwrap(), name)
}

fn routes_in(fake: &FakeKernel, table: u32) -> Vec<Route> {
    let ctr = fake.kernel().open_netns(CTR).unwrap();
    fake.routes(&ctr)
        .into_iter()
        .filter(|r| r.table_id() == table)
        .collect()
}

#[test]
fn interfaces_join_a_vrf_with_their_addresses_and_routes_and_del_removes_it_last() {
    let fake = kernel();
    // Another VRF holds table 1: ours gets 2.
    let ctr = fake.kernel().open_netns(CTR).unwrap();
    fake.kernel()
        .netlink(&ctr)
        .unwrap()
        .create_link(&LinkSpec::new("red", KindSpec::Vrf { table: 1 }))
        .unwrap();
    let (code, out) = call(&fake, "ADD", "eth0", &conf(json!({})));
    assert_eq!(code, 0, "{out}");
    let blue = link(&fake, "blue").expect("vrf");
    assert_eq!(
        (blue.kind, blue.data, blue.up),
        (LinkKind::Vrf, KindData::Vrf(2), true)
    );
    assert_eq!(link(&fake, "eth0").unwrap().master, Some(blue.index));
    let table: Vec<String> = routes_in(&fake, 2)
        .iter()
        .map(|r| r.dst.to_string())
        .collect();
    for dst in ["0.0.0.0/0", "10.1.0.0/24", "fd01::/64"] {
        assert!(table.contains(&dst.to_string()), "{dst} in {table:?}");
    }
    let addresses: Vec<String> = fake
        .addresses(&ctr)
        .iter()
        .filter(|a| a.index == link(&fake, "eth0").unwrap().index)
        .map(|a| a.address.to_string())
        .collect();
    assert!(
        addresses.contains(&"fd01::2/64".to_string()),
        "{addresses:?}"
    );

    // net1 joins too, its ECMP default route with it.
    let (code, out) = call(&fake, "ADD", "net1", &conf(json!({})));
    assert_eq!(code, 0, "{out}");
    let ecmp = routes_in(&fake, 2)
        .into_iter()
        .find(|r| r.dst.to_string() == "::/0")
        .expect("ECMP default route in the VRF table (upstream #1253)");
    assert_eq!(ecmp.nexthops.len(), 2);
    assert_eq!(call(&fake, "CHECK", "net1", &conf(json!({}))).0, 0);
    // Repeated ADD converges.
    assert_eq!(call(&fake, "ADD", "net1", &conf(json!({}))).0, 0);

    // The VRF stays while an interface is in it.
    assert_eq!(call(&fake, "DEL", "eth0", &conf(json!({}))).0, 0);
    assert!(link(&fake, "blue").is_some());
    assert_eq!(link(&fake, "eth0").unwrap().master, None);
    let (code, out) = call(&fake, "CHECK", "eth0", &conf(json!({})));
    assert_eq!(code, 1, "{out}");
    assert_eq!(call(&fake, "DEL", "net1", &conf(json!({}))).0, 0);
    assert!(link(&fake, "blue").is_none());
    assert_eq!(call(&fake, "DEL", "net1", &conf(json!({}))).0, 0);
}

#[test]
fn errors_are_upstreams_and_a_failed_add_takes_everything_back() {
    let fake = kernel();
    for (extra, message) in [
        (
            json!({"vrfname": ""}),
            "configuration is expected to have a valid vrf name",
        ),
        (json!({"prevResult": null}), "missing prevResult"),
        (
            json!({"vrfname": "eth0"}),
            "already exists and is not a VRF",
        ),
    ] {
        let (code, out) = call(&fake, "ADD", "eth0", &conf(extra.clone()));
        assert_eq!(code, 1, "{extra}");
        assert!(out.contains(message), "{extra}: {out}");
    }
    assert_eq!(call(&fake, "ADD", "eth0", &conf(json!({"table": 7}))).0, 0);
    let (_, out) = call(&fake, "ADD", "net1", &conf(json!({"table": 8})));
    assert!(
        out.contains("VRF blue already exist with different routing table 7"),
        "{out}"
    );
    let (_, out) = call(&fake, "ADD", "eth0", &conf(json!({"vrfname": "green"})));
    assert!(
        out.contains("interface eth0 has already a master set: blue"),
        "{out}"
    );

    // A refused route after the interface joined: it leaves again, with its routes
    // and addresses back in main, and the VRF it created is gone.
    for (ifname, op) in [
        ("net1", Op::NewRoute),
        ("eth0", Op::NewRoute),
        ("eth0", Op::NewAddress),
    ] {
        let fake = kernel();
        let before = fake.snapshot();
        fake.fail_op(op, 1, 22);
        let (code, out) = call(&fake, "ADD", ifname, &conf(json!({})));
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("cmdAdd failed"), "{out}");
        assert_eq!(fake.snapshot(), before, "{ifname}: {op:?} refused");
    }
}
