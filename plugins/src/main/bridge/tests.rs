//! bridge against the fake kernel: the plugin's own ADD/DEL code, with every
//! netlink step failing in turn, and the VLAN logic this machine's kernel lacks.

use cni_net::rtnl::fake::{ENOSPC, HOST};
use cni_net::{FakeKernel, Kernel};

use super::host::{apply_vlans, first_host};
use super::*;
use crate::pkg::testing::FakeIpam;

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"mynet","type":"bridge","bridge":"cni0",
    "isDefaultGateway":true,"hairpinMode":true,"ipam":{"type":"fake-ipam"}}"#;

/// Runs bridge `command` on the fake kernel as the skel would; returns (exit code, stdout).
fn run(kernel: &Kernel, ipam: &FakeIpam, command: &str, netns: &str) -> (i32, String) {
    crate::pkg::testing::run(&Bridge, kernel, ipam, command, netns, CONF)
}

#[test]
fn add_and_del_against_the_fake_kernel() {
    let fake = FakeKernel::new();
    let ctr = fake.add_netns("/fake/ctr");
    let before = fake.snapshot();
    let ipam = FakeIpam::default();
    let (code, out) = run(&fake.kernel(), &ipam, "ADD", "/fake/ctr");
    assert_eq!(code, 0, "{out}");
    let host = fake.host();
    let bridge = fake.link(&host, "cni0").expect("bridge");
    assert!(bridge.up);
    let eth0 = fake.link(&ctr, "eth0").expect("eth0");
    assert_eq!(eth0.oper_state, cni_net::OperState::Up);
    let port = fake
        .links(&host)
        .into_iter()
        .find(|l| l.master == Some(bridge.index))
        .expect("port");
    assert_eq!(port.port.map(|p| p.hairpin), Some(true));
    let gateway: IpNet = "10.22.0.1/16".parse().unwrap();
    assert!(fake.addresses(&host).iter().any(|a| a.address == gateway));
    assert!(
        fake.routes(&ctr)
            .iter()
            .any(|r| r.dst.prefix_len() == 0 && r.gw == Some(gateway.addr()))
    );
    assert_eq!(
        fake.sysctl(&host, "net/ipv4/ip_forward").as_deref(),
        Some("1")
    );
    assert_eq!(
        fake.sysctl(&ctr, "net/ipv4/conf/eth0/arp_notify")
            .as_deref(),
        Some("1")
    );

    let (code, out) = run(&fake.kernel(), &ipam, "DEL", "/fake/ctr");
    assert_eq!(code, 0, "{out}");
    assert!(fake.link(&ctr, "eth0").is_none());
    assert!(fake.links(&host).iter().all(|l| l.master.is_none()));
    assert!(ipam.held.lock().unwrap().is_empty());
    assert_ne!(
        fake.snapshot(),
        before,
        "the bridge and its address stay, as upstream"
    );
    assert_eq!(run(&fake.kernel(), &ipam, "DEL", "/fake/ctr").0, 0);
    fake.remove_netns("/fake/ctr");
    assert_eq!(run(&fake.kernel(), &ipam, "DEL", "/fake/ctr").0, 0);
    assert_eq!(HOST, fake.host().path().to_str().unwrap());
}

#[test]
fn every_failed_netlink_step_of_an_add_rolls_back_to_an_empty_kernel() {
    // How many requests a successful ADD makes.
    let fake = FakeKernel::new();
    fake.add_netns("/fake/ctr");
    let start = fake.requests();
    let ipam = FakeIpam::default();
    assert_eq!(run(&fake.kernel(), &ipam, "ADD", "/fake/ctr").0, 0);
    let steps = fake.requests() - start;
    assert!(
        steps > 10,
        "a bridge ADD is a dozen or more requests: {steps}"
    );

    for step in 1..=steps {
        let fake = FakeKernel::new();
        fake.add_netns("/fake/ctr");
        let empty = fake.snapshot();
        let ipam = FakeIpam::default();
        fake.fail_request(step, ENOSPC);
        let (code, out) = run(&fake.kernel(), &ipam, "ADD", "/fake/ctr");
        assert_eq!(code, 1, "step {step} failed, yet the ADD succeeded: {out}");
        assert!(out.contains("\"code\": 999"), "step {step}: {out}");
        assert_eq!(fake.snapshot(), empty, "step {step} left state behind");
        assert!(
            ipam.held.lock().unwrap().is_empty(),
            "step {step} kept the IPAM address"
        );
    }
}

#[test]
fn a_missing_netns_fails_before_anything_is_made() {
    let fake = FakeKernel::new();
    let empty = fake.snapshot();
    let ipam = FakeIpam::default();
    let (code, out) = run(&fake.kernel(), &ipam, "ADD", "/fake/gone");
    assert_eq!(code, 1, "{out}");
    assert_eq!(fake.snapshot(), empty);
}

#[test]
fn vlans_go_to_the_port_as_upstream_orders_them() {
    let fake = FakeKernel::new();
    let mut host = fake.kernel().host().unwrap();
    host.create_link(&cni_net::LinkSpec::new(
        "br0",
        cni_net::KindSpec::Bridge {
            vlan_filtering: true,
        },
    ))
    .unwrap();
    let br = host.require_link("br0").unwrap();
    let port = |name: &'static str, host: &mut Netlink| {
        host.create_link(&cni_net::LinkSpec {
            master: Some(br.index),
            ..cni_net::LinkSpec::new(name, cni_net::KindSpec::Dummy)
        })
        .unwrap();
        host.require_link(name).unwrap().index
    };
    let p1 = port("p1", &mut host);
    let conf = Conf {
        vlan: 100,
        ..Default::default()
    };
    apply_vlans(&mut host, p1, &conf, &[200, 201]).expect("fake kernel");
    // VID 1 dropped, 100 the untagged PVID, the trunk tagged.
    assert_eq!(
        fake.bridge_vlans(&fake.host(), p1),
        vec![(100, true, true), (200, false, false), (201, false, false)]
    );

    // A trunk without vlan keeps VID 1 as the untagged PVID; preserveDefaultVlan
    // keeps the existing entry.
    let p2 = port("p2", &mut host);
    let conf = Conf {
        preserve_default_vlan: true,
        ..Default::default()
    };
    apply_vlans(&mut host, p2, &conf, &[5]).expect("fake kernel");
    assert_eq!(
        fake.bridge_vlans(&fake.host(), p2),
        vec![(1, true, true), (5, false, false)]
    );
    // No VLAN keys: no VLAN requests.
    let p3 = port("p3", &mut host);
    let count = fake.requests();
    apply_vlans(&mut host, p3, &Conf::default(), &[]).expect("nothing");
    assert_eq!(fake.requests(), count);
}

#[test]
fn trunks_are_validated_and_sorted() {
    let t = |id: Option<i64>, min: Option<i64>, max: Option<i64>| Trunk {
        id,
        min_id: min,
        max_id: max,
    };
    assert_eq!(
        trunk_vids(&[
            t(Some(7), None, None),
            t(None, Some(3), Some(5)),
            t(Some(4), None, None)
        ]),
        Ok(vec![3, 4, 5, 7])
    );
    assert_eq!(
        trunk_vids(&[t(None, Some(3), None)]),
        Err("minID and maxID should be configured simultaneously, maxID is missing".into())
    );
    assert_eq!(
        trunk_vids(&[t(None, None, Some(3))]),
        Err("minID and maxID should be configured simultaneously, minID is missing".into())
    );
    assert_eq!(
        trunk_vids(&[t(None, Some(5), Some(3))]),
        Err("minID is greater than maxID in trunk parameter".into())
    );
    assert_eq!(
        trunk_vids(&[t(Some(4095), None, None)]),
        Err("incorrect trunk id parameter".into())
    );
    assert_eq!(
        trunk_vids(&[t(None, Some(0), Some(3))]),
        Err("incorrect trunk minID parameter".into())
    );
}

#[test]
fn gateway_defaults_to_the_first_host_address() {
    assert_eq!(
        first_host(&"10.22.3.4/16".parse().expect("cidr")).to_string(),
        "10.22.0.1"
    );
    assert_eq!(
        first_host(&"fd00:1::5/64".parse().expect("cidr")).to_string(),
        "fd00:1::1"
    );
}
