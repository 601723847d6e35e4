//! The spec lifecycle (`cni_testkit::conformance`) for each plugin: ADD, CHECK, ADD
//! again, DEL twice at every version, DEL never added, with an empty netns and with
//! the netns gone, each time back to the same kernel, file and firewall state.
//! Against the real kernel in a sandbox, and for the interface plugins also against
//! the fake kernel, in-process.

mod common;

use std::path::Path;

use cni_net::{FakeKernel, KindSpec, LinkSpec};
use cni_testkit::require_root;
use common::{
    ALL_VERSIONS, chained_conformance_on_fake, chained_conformance_on_kernel, conformance_on_fake,
    conformance_on_fake_with, conformance_on_kernel,
};
use serde_json::{Value, json};

fn host_local(data_dir: &Path, subnet: &str) -> Value {
    json!({"type": "host-local", "subnet": subnet, "dataDir": data_dir, "routes": [{"dst": "0.0.0.0/0"}]})
}

fn bridge_conf(data_dir: &Path, masq: bool) -> Value {
    json!({
        "name": "confnet", "type": "bridge", "bridge": "cni-conf", "isGateway": true,
        "ipMasq": masq, "ipam": host_local(data_dir, "10.66.0.0/24"),
    })
}

fn ptp_conf(data_dir: &Path, masq: bool) -> Value {
    json!({"name": "confptp", "type": "ptp", "ipMasq": masq, "ipam": host_local(data_dir, "10.67.0.0/24")})
}

#[test]
fn bridge_on_the_kernel() {
    require_root!();
    conformance_on_kernel("bridge", &ALL_VERSIONS, |s| {
        bridge_conf(s.state_dir(), true)
    });
}

#[test]
fn bridge_on_the_fake_kernel() {
    conformance_on_fake("bridge", &ALL_VERSIONS, |dir| bridge_conf(dir, false));
}

#[test]
fn ptp_on_the_kernel() {
    require_root!();
    conformance_on_kernel("ptp", &ALL_VERSIONS, |s| ptp_conf(s.state_dir(), true));
}

#[test]
fn ptp_on_the_fake_kernel() {
    conformance_on_fake("ptp", &ALL_VERSIONS, |dir| ptp_conf(dir, false));
}

fn macvlan_conf(data_dir: &Path) -> Value {
    json!({"name": "confmv", "type": "macvlan", "master": "mvmaster",
        "ipam": host_local(data_dir, "10.71.0.0/24")})
}

#[test]
fn macvlan_on_the_kernel() {
    require_root!();
    conformance_on_kernel("macvlan", &ALL_VERSIONS, |s| {
        s.ip(
            s.host_name(),
            &[
                "link", "add", "mvmaster", "type", "veth", "peer", "name", "mvpeer",
            ],
        );
        macvlan_conf(s.state_dir())
    });
}

/// A veth end `name` in the fake kernel's host namespace, as a master.
fn fake_master(fake: &FakeKernel, name: &str) {
    let peer = format!("{name}p");
    let kind = KindSpec::Veth {
        peer: &peer,
        peer_netns: None,
        peer_mac: None,
    };
    fake.kernel()
        .host()
        .and_then(|mut host| host.create_link(&LinkSpec::new(name, kind)))
        .expect("master link");
}

#[test]
fn macvlan_on_the_fake_kernel() {
    conformance_on_fake_with(
        "macvlan",
        &ALL_VERSIONS,
        |fake| fake_master(fake, "mvmaster"),
        macvlan_conf,
    );
}

/// The kernel lifecycle of a plugin whose link kind this kernel may lack: the
/// master `mvmaster` is made first; without the kind the test says why and skips.
fn on_the_kernel_if_it_has(kind: &str, plugin: &str, conf: impl Fn(&Path) -> Value) {
    let sandbox = cni_testkit::Sandbox::new();
    sandbox.ip(
        sandbox.host_name(),
        &[
            "link", "add", "mvmaster", "type", "veth", "peer", "name", "mvpeer",
        ],
    );
    let (parent, kind_args): (_, &[&str]) = match kind {
        "dummy" => (None, &[]),
        "vlan" => (Some("mvmaster"), &["id", "5"]),
        _ => (Some("mvmaster"), &[]),
    };
    if let Some(reason) = sandbox.kernel_lacks(kind, parent, kind_args) {
        eprintln!("skipped {plugin} on the kernel: {reason}; the fake kernel covers it");
        return;
    }
    drop(sandbox);
    conformance_on_kernel(plugin, &ALL_VERSIONS, |s| {
        s.ip(
            s.host_name(),
            &[
                "link", "add", "mvmaster", "type", "veth", "peer", "name", "mvpeer",
            ],
        );
        conf(s.state_dir())
    });
}

fn ipvlan_conf(data_dir: &Path) -> Value {
    json!({"name": "confiv", "type": "ipvlan", "master": "mvmaster", "mode": "l3",
        "ipam": host_local(data_dir, "10.73.0.0/24")})
}

fn vlan_conf(data_dir: &Path) -> Value {
    json!({"name": "confvl", "type": "vlan", "master": "mvmaster", "vlanId": 5, "mtu": 1400,
        "ipam": host_local(data_dir, "10.74.0.0/24")})
}

fn dummy_conf(data_dir: &Path) -> Value {
    json!({"name": "confdu", "type": "dummy", "ipam": host_local(data_dir, "10.75.0.0/24")})
}

#[test]
fn ipvlan_vlan_dummy_on_the_kernel_where_it_has_them() {
    require_root!();
    on_the_kernel_if_it_has("ipvlan", "ipvlan", ipvlan_conf);
    on_the_kernel_if_it_has("vlan", "vlan", vlan_conf);
    on_the_kernel_if_it_has("dummy", "dummy", dummy_conf);
}

#[test]
fn ipvlan_vlan_dummy_on_the_fake_kernel() {
    let master = |fake: &FakeKernel| fake_master(fake, "mvmaster");
    conformance_on_fake_with("ipvlan", &ALL_VERSIONS, master, ipvlan_conf);
    conformance_on_fake_with("vlan", &ALL_VERSIONS, master, vlan_conf);
    conformance_on_fake("dummy", &ALL_VERSIONS, dummy_conf);
}

fn tap_conf(data_dir: &Path) -> Value {
    json!({"name": "conftap", "type": "tap", "mtu": 1400, "ipam": host_local(data_dir, "10.76.0.0/24")})
}

#[test]
fn tap_on_the_kernel() {
    require_root!();
    conformance_on_kernel("tap", &ALL_VERSIONS, |s| tap_conf(s.state_dir()));
}

#[test]
fn tap_on_the_fake_kernel() {
    conformance_on_fake("tap", &ALL_VERSIONS, tap_conf);
}

fn host_device_conf(data_dir: &Path) -> Value {
    json!({"name": "confhd", "type": "host-device", "device": "mvmaster",
        "dataDir": data_dir.join("hd"), "ipam": host_local(data_dir, "10.77.0.0/24")})
}

#[test]
fn host_device_on_the_kernel() {
    require_root!();
    conformance_on_kernel("host-device", &ALL_VERSIONS, |s| {
        s.ip(
            s.host_name(),
            &[
                "link", "add", "mvmaster", "type", "veth", "peer", "name", "mvpeer",
            ],
        );
        host_device_conf(s.state_dir())
    });
}

#[test]
fn host_device_on_the_fake_kernel() {
    conformance_on_fake_with(
        "host-device",
        &ALL_VERSIONS,
        |fake| fake_master(fake, "mvmaster"),
        host_device_conf,
    );
}

#[test]
fn loopback_on_the_kernel() {
    require_root!();
    conformance_on_kernel(
        "loopback",
        &ALL_VERSIONS,
        |_| json!({"name": "lo", "type": "loopback"}),
    );
}

#[test]
fn loopback_on_the_fake_kernel() {
    conformance_on_fake(
        "loopback",
        &ALL_VERSIONS,
        |_| json!({"name": "lo", "type": "loopback"}),
    );
}

#[test]
fn host_local_on_the_kernel() {
    require_root!();
    conformance_on_kernel(
        "host-local",
        &ALL_VERSIONS,
        |s| json!({"name": "confhl", "type": "host-local", "ipam": host_local(s.state_dir(), "10.68.0.0/24")}),
    );
}

#[test]
fn static_on_the_kernel() {
    require_root!();
    // static supports results from 0.3.0 on (upstream: several addresses).
    conformance_on_kernel("static", &ALL_VERSIONS[2..], |_| {
        json!({"name": "confst", "type": "static", "ipam": {"type": "static",
            "addresses": [{"address": "10.69.0.5/24", "gateway": "10.69.0.1"}]}})
    });
}

#[test]
fn portmap_on_the_kernel_with_both_backends() {
    require_root!();
    for backend in ["iptables", "nftables"] {
        // Chained: a prevResult names the container's address (from 0.3.0 on).
        conformance_on_kernel("portmap", &ALL_VERSIONS[2..], |s| {
            json!({
                "name": "confpm", "type": "portmap", "backend": backend,
                "dataDir": s.state_dir().join("pm"),
                "runtimeConfig": {"portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]},
                "prevResult": {"cniVersion": "1.0.0",
                    "interfaces": [{"name": "eth0", "sandbox": "/x"}],
                    "ips": [{"address": "10.70.0.5/24", "interface": 0}]},
            })
        });
    }
}

/// The main plugin the chained plugins run after: ptp (a veth, which bandwidth
/// needs; on the fake kernel too).
fn ptp_main(data_dir: &Path, subnet: &str) -> Value {
    json!({"type": "ptp", "ipam": host_local(data_dir, subnet)})
}

fn tuning_conf(data_dir: &Path) -> (Option<Value>, Value) {
    let tuning = json!({"name": "conftune", "type": "tuning", "dataDir": data_dir.join("tuning"),
        "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"},
        "mtu": 1400, "promisc": true, "allmulti": true, "txQLen": 100, "mac": "02:00:00:00:00:21"});
    (Some(ptp_main(data_dir, "10.78.0.0/24")), tuning)
}

const CHAINED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[test]
fn tuning_on_the_kernel() {
    require_root!();
    chained_conformance_on_kernel("tuning", &CHAINED_VERSIONS, |s| tuning_conf(s.state_dir()));
}

#[test]
fn tuning_on_the_fake_kernel() {
    chained_conformance_on_fake("tuning", &CHAINED_VERSIONS, |_| {}, tuning_conf);
}

fn bandwidth_conf(data_dir: &Path) -> (Option<Value>, Value) {
    let bandwidth = json!({"name": "confbw", "type": "bandwidth",
        "ingressRate": 8_000_000, "ingressBurst": 80_000,
        "egressRate": 16_000_000, "egressBurst": 160_000});
    (Some(ptp_main(data_dir, "10.85.0.0/24")), bandwidth)
}

#[test]
fn bandwidth_on_the_kernel() {
    require_root!();
    chained_conformance_on_kernel("bandwidth", &CHAINED_VERSIONS, |s| {
        bandwidth_conf(s.state_dir())
    });
}

#[test]
fn bandwidth_on_the_fake_kernel() {
    chained_conformance_on_fake("bandwidth", &CHAINED_VERSIONS, |_| {}, bandwidth_conf);
}

fn sbr_conf(data_dir: &Path) -> (Option<Value>, Value) {
    let sbr = json!({"name": "confsbr", "type": "sbr", "addSourceHints": true});
    (Some(ptp_main(data_dir, "10.92.0.0/24")), sbr)
}

#[test]
fn sbr_on_the_kernel() {
    require_root!();
    chained_conformance_on_kernel("sbr", &CHAINED_VERSIONS, |s| sbr_conf(s.state_dir()));
}

#[test]
fn sbr_on_the_fake_kernel() {
    chained_conformance_on_fake("sbr", &CHAINED_VERSIONS, |_| {}, sbr_conf);
}

fn vrf_conf(data_dir: &Path) -> (Option<Value>, Value) {
    let vrf = json!({"name": "confvrf", "type": "vrf", "vrfname": "blue"});
    let mut main = ptp_main(data_dir, "10.93.0.0/24");
    main["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    (Some(main), vrf)
}

#[test]
fn vrf_on_the_kernel_if_it_has_vrf() {
    require_root!();
    let sandbox = cni_testkit::Sandbox::new();
    if let Some(reason) = sandbox.kernel_lacks("vrf", None, &["table", "10"]) {
        eprintln!("skipped vrf on the kernel: {reason}; the fake kernel covers it");
        return;
    }
    drop(sandbox);
    chained_conformance_on_kernel("vrf", &CHAINED_VERSIONS[1..], |s| vrf_conf(s.state_dir()));
}

#[test]
fn vrf_on_the_fake_kernel() {
    chained_conformance_on_fake("vrf", &CHAINED_VERSIONS[1..], |_| {}, vrf_conf);
}
