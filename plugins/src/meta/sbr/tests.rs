//! sbr on the fake kernel: tables picked from 100, rules and moved routes, the
//! `table` and `addSourceHints` modes, validation, DEL, and a failed ADD that
//! takes everything back.

use cni_net::rtnl::fake::Op;
use cni_net::{FakeKernel, Route, Rule};
use serde_json::{Value, json};

use super::Sbr;
use crate::pkg::testing::{FakeIpam, add_veth, run};

const CTR: &str = "/fake/ctr";

/// A container with `eth0` holding 10.1.0.2/24 and 10.2.0.2/24 (their connected
/// routes come with them) and a default route via 10.1.0.1.
fn kernel() -> FakeKernel {
    let fake = FakeKernel::new();
    let ctr = fake.add_netns(CTR);
    let eth0 = add_veth(&fake, &ctr, "eth0", "peer0");
    let mut netlink = fake.kernel().netlink(&ctr).unwrap();
    netlink.set_link_up(eth0.index, true).unwrap();
    for a in ["10.1.0.2/24", "10.2.0.2/24"] {
        netlink
            .add_address(eth0.index, a.parse().unwrap(), false)
            .unwrap();
    }
    netlink
        .add_route(&Route::new(
            "0.0.0.0/0".parse().unwrap(),
            Some("10.1.0.1".parse().unwrap()),
            eth0.index,
        ))
        .unwrap();
    fake
}

fn conf(extra: Value) -> String {
    let mut conf = json!({"cniVersion": "1.1.0", "name": "sbrnet", "type": "sbr",
        "prevResult": {"cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "sandbox": CTR}],
            "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 0},
                    {"address": "10.2.0.2/24", "gateway": "10.2.0.1", "interface": 0}]}});
    for (k, v) in extra.as_object().unwrap() {
        conf[k] = v.clone();
    }
    conf.to_string()
}

fn state(fake: &FakeKernel) -> (Vec<Rule>, Vec<Route>) {
    let ctr = fake.kernel().open_netns(CTR).unwrap();
    let mut rules: Vec<Rule> = fake
        .rules(&ctr)
        .into_iter()
        .filter(|r| r.src.is_some())
        .collect();
    rules.sort_by_key(|r| r.table);
    (rules, fake.routes(&ctr))
}

fn call(fake: &FakeKernel, command: &str, c: &str) -> (i32, String) {
    run(&Sbr, &fake.kernel(), &FakeIpam::default(), command, CTR, c)
}

fn in_table(routes: &[Route], table: u32) -> Vec<String> {
    let mut found: Vec<String> = routes
        .iter()
        .filter(|r| r.table_id() == table)
        .map(|r| {
            format!(
                "{} via {:?}",
                r.dst,
                r.gw.map(|g| g.to_string()).unwrap_or_default()
            )
        })
        .collect();
    found.sort();
    found
}

#[test]
fn each_address_gets_a_table_with_its_routes_and_main_loses_the_interfaces_routes() {
    let fake = kernel();
    // Table 100 is taken by another rule: sbr starts at 101.
    let ctr = fake.kernel().open_netns(CTR).unwrap();
    let mut netlink = fake.kernel().netlink(&ctr).unwrap();
    netlink
        .add_rule(&Rule::from_source("192.0.2.9/32".parse().unwrap(), 100))
        .unwrap();
    let (code, out) = call(&fake, "ADD", &conf(json!({})));
    assert_eq!(code, 0, "{out}");
    let (rules, routes) = state(&fake);
    let sbr: Vec<(String, u32)> = rules
        .iter()
        .filter(|r| r.table != 100)
        .map(|r| (r.src.unwrap().to_string(), r.table))
        .collect();
    assert_eq!(
        sbr,
        [
            ("10.1.0.2/32".to_string(), 101),
            ("10.2.0.2/32".to_string(), 102)
        ]
    );
    assert_eq!(
        in_table(&routes, 101),
        ["0.0.0.0/0 via \"10.1.0.1\"", "10.1.0.0/24 via \"\""]
    );
    assert_eq!(
        in_table(&routes, 102),
        ["0.0.0.0/0 via \"10.2.0.1\"", "10.2.0.0/24 via \"\""]
    );
    assert!(in_table(&routes, 254).is_empty(), "{routes:?}");
    let (code, out) = call(&fake, "CHECK", &conf(json!({})));
    assert_eq!((code, out.as_str()), (0, ""));

    let (code, out) = call(&fake, "DEL", &conf(json!({})));
    assert_eq!((code, out.as_str()), (0, ""));
    let (rules, _) = state(&fake);
    assert_eq!(rules.len(), 1, "only the other rule is left: {rules:?}");
    let (code, out) = call(&fake, "CHECK", &conf(json!({})));
    assert_eq!(code, 1, "{out}");
    assert_eq!(call(&fake, "DEL", &conf(json!({}))).0, 0);
}

#[test]
fn static_gateways_table_mode_and_source_hints() {
    let fake = kernel();
    let (code, out) = call(
        &fake,
        "ADD",
        &conf(json!({"gateways": ["10.1.0.254"], "addSourceHints": true})),
    );
    assert_eq!(code, 0, "{out}");
    let (_, routes) = state(&fake);
    assert_eq!(
        in_table(&routes, 100),
        ["0.0.0.0/0 via \"10.1.0.254\"", "10.1.0.0/24 via \"\""]
    );
    // Source hints: the subnets stay in main as link routes from their address.
    let hints: Vec<String> = routes
        .iter()
        .filter(|r| r.table_id() == 254)
        .map(|r| format!("{} src {:?}", r.dst, r.src.map(|s| s.to_string())))
        .collect();
    assert!(
        hints.contains(&"10.1.0.0/24 src Some(\"10.1.0.2\")".to_string()),
        "{hints:?}"
    );
    assert!(
        !routes
            .iter()
            .any(|r| r.table_id() == 254 && r.dst.prefix_len() == 0),
        "the default route left main"
    );

    let fake = kernel();
    let before = state(&fake).1;
    let (code, out) = call(&fake, "ADD", &conf(json!({"table": 200})));
    assert_eq!(code, 0, "{out}");
    let (rules, routes) = state(&fake);
    assert!(rules.iter().all(|r| r.table == 200) && rules.len() == 2);
    assert_eq!(routes, before, "table mode moves no routes");
    assert_eq!(call(&fake, "DEL", &conf(json!({"table": 200}))).0, 0);
    assert!(state(&fake).0.is_empty());
}

#[test]
fn bad_configs_are_refused_before_anything_changes() {
    for (extra, message) in [
        (
            json!({"gateways": ["10.0.0.1", "10.0.0.2", "fd00::1"]}),
            "gateways list cannot contain more than 2 entries",
        ),
        (
            json!({"gateways": ["10.0.0.1", "10.0.0.2"]}),
            "cannot contain multiple IPv4 addresses",
        ),
        (
            json!({"gateways": ["not-an-ip"]}),
            "invalid static gateway IP address",
        ),
        (json!({"table": -1}), "invalid table"),
        (
            json!({"prevResult": null}),
            "must be called as chained plugin",
        ),
        (
            json!({"prevResult": {"cniVersion": "1.1.0", "ips": []}}),
            "No IP addresses supplied on interface: eth0",
        ),
    ] {
        let fake = kernel();
        let before = fake.snapshot();
        let (code, out) = call(&fake, "ADD", &conf(extra.clone()));
        assert_eq!(code, 1, "{extra}: {out}");
        assert!(out.contains(message), "{extra}: {out}");
        assert_eq!(fake.snapshot(), before);
        // DEL needs only `table`: the same config does not stop it.
        assert_eq!(call(&fake, "DEL", &conf(extra)).0, 0);
    }
}

#[test]
fn a_refused_route_takes_back_the_rules_and_routes_already_made() {
    for n in 1..=4 {
        let fake = kernel();
        let before = fake.snapshot();
        fake.fail_op(Op::NewRoute, n, 22);
        let (code, out) = call(&fake, "ADD", &conf(json!({})));
        assert_eq!(code, 1, "route {n}: {out}");
        assert_eq!(fake.snapshot(), before, "route {n} failed");
    }
}
