//! Bounded fuzzing (proptest, on stable) of every plugin's configuration, through its
//! whole verb path: `cni_skel::run` in-process on the fake kernel (no real kernel or
//! firewall is touched), every verb. Any config gives a result or a CNI error on
//! stdout with exit 1; none panics.

use cni_net::FakeKernel;
use cni_skel::{Context, Invoke};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The keys of every plugin, so that random configs reach their checks.
const KEYS: &[&str] = &[
    "bridge",
    "isGateway",
    "isDefaultGateway",
    "forceAddress",
    "ipMasq",
    "ipMasqBackend",
    "mtu",
    "hairpinMode",
    "promiscMode",
    "vlan",
    "vlanTrunk",
    "preserveDefaultVlan",
    "macspoofchk",
    "enabledad",
    "disableContainerInterface",
    "portIsolation",
    "args",
    "runtimeConfig",
    "prevResult",
    "dns",
    "backend",
    "snat",
    "conditionsV4",
    "conditionsV6",
    "masqAll",
    "markMasqBit",
    "externalSetMarkChain",
    "portMappings",
    "hostPort",
    "containerPort",
    "protocol",
    "hostIP",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "ranges",
    "routes",
    "resolvConf",
    "addresses",
    "address",
    "ips",
    "mac",
    "cni",
    "id",
    "minID",
    "maxID",
    "dst",
    "gw",
    "interfaces",
    "name",
    "cniVersion",
    "cni.dev/valid-attachments",
    "containerID",
    "ifname",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            13,
            31,
            32,
            1500,
            4094,
            4095,
            65536,
            1 << 40
        ])
        .prop_map(Value::from),
        prop::sample::select(vec![
            "10.9.0.0/24",
            "10.9.0.5/24",
            "10.9.0.1",
            "10.9.0.200",
            "fd09::/64",
            "fd09::5/64",
            "0.0.0.0/0",
            "iptables",
            "nftables",
            "tcp",
            "udp",
            "sctp",
            "foo",
            "br-fuzz",
            "aa:bb:cc:dd:ee:ff",
            "1.0.0",
            "0.3.1",
            "",
            "eth0",
            "/dev/zero",
            "x".repeat(20).leak(),
        ])
        .prop_map(|s| Value::String(s.into())),
    ]
}

fn doc() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..8).prop_map(
                |entries| {
                    Value::Object(
                        entries
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect::<Map<_, _>>(),
                    )
                }
            ),
        ]
    })
}

/// Keys by the type their plugins expect, so most values get past decoding and reach
/// the plugin's own checks and kernel work.
const BOOLS: &[&str] = &[
    "isGateway",
    "isDefaultGateway",
    "forceAddress",
    "ipMasq",
    "hairpinMode",
    "promiscMode",
    "preserveDefaultVlan",
    "macspoofchk",
    "enabledad",
    "disableContainerInterface",
    "portIsolation",
    "snat",
    "masqAll",
    "linkInContainer",
];
const NUMBERS: &[&str] = &["mtu", "vlan", "markMasqBit", "vlanId", "bcqueuelen"];
const STRINGS: &[&str] = &[
    "bridge",
    "ipMasqBackend",
    "backend",
    "externalSetMarkChain",
    "master",
    "mode",
    "mac",
    "device",
    "hwaddr",
    "kernelpath",
    "pciBusID",
];

fn typed_body() -> impl Strategy<Value = Value> {
    let value = |key: &'static str| -> BoxedStrategy<Value> {
        if BOOLS.contains(&key) {
            any::<bool>().prop_map(Value::Bool).boxed()
        } else if NUMBERS.contains(&key) {
            prop::sample::select(vec![0i64, 1, 13, 100, 1400, 4094, 4095, -3, 1 << 40])
                .prop_map(Value::from)
                .boxed()
        } else if STRINGS.contains(&key) {
            prop::sample::select(vec![
                "br-fuzz",
                "eth9",
                "l3",
                "passthru",
                "02:00:00:00:00:09",
                "iptables",
                "nftables",
                "foo",
                "",
                "b".repeat(16).leak(),
            ])
            .prop_map(|s: &str| Value::String(s.into()))
            .boxed()
        } else {
            leaf().boxed()
        }
    };
    let keys: Vec<&'static str> = BOOLS
        .iter()
        .chain(NUMBERS)
        .chain(STRINGS)
        .copied()
        .collect();
    proptest::collection::vec(prop::sample::select(keys), 0..6)
        .prop_flat_map(move |keys| {
            let values: Vec<BoxedStrategy<(String, Value)>> = keys
                .into_iter()
                .map(|k| value(k).prop_map(move |v| (k.to_string(), v)).boxed())
                .collect();
            values
        })
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
}

/// An `ipam` section for host-local or static, valid or nearly so.
fn typed_ipam() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec!["10.9.0.0/24", "fd09::/64", "10.9.0.0/30", "10.9.0.5/24", "0.0.0.0/0"])
            .prop_map(|subnet| json!({"type": "host-local", "subnet": subnet,
                "routes": [{"dst": "0.0.0.0/0"}]})),
        prop::sample::select(vec!["10.9.0.5/24", "fd09::5/64", "10.9.0.5"]).prop_map(
            |address| json!({"type": "static", "addresses": [{"address": address, "gateway": "10.9.0.1"}]})
        ),
        doc(),
    ]
}

/// A random config for `plugin`, with its state kept in `state`: the network name and
/// version are valid most of the time, the IPAM type is one that exists (or not), and
/// every `dataDir` points into `state`.
fn config(
    plugin: &str,
    body: Value,
    ipam: Value,
    version: &str,
    state: &std::path::Path,
) -> String {
    let mut conf = match body {
        Value::Object(map) => Value::Object(map),
        other => json!({"x": other}),
    };
    conf["name"] = json!("fuzznet");
    conf["cniVersion"] = json!(version);
    // host-device keeps its records there; never under /var/lib in a test.
    conf["dataDir"] = json!(state);
    conf["type"] = json!(plugin);
    conf["dataDir"] = json!(state);
    if let Value::Object(mut ipam) = ipam {
        ipam.insert("dataDir".into(), json!(state));
        conf["ipam"] = Value::Object(ipam);
    } else if !ipam.is_null() {
        conf["ipam"] = ipam;
    }
    conf.to_string()
}

fn run(plugin: &'static str, command: &str, stdin: &str) -> (i32, String) {
    let fake = FakeKernel::new();
    fake.add_netns("/fake/ctr");
    let kernel = fake.kernel();
    // A master for macvlan, ipvlan and vlan.
    let kind = cni_net::KindSpec::Veth {
        peer: "eth9p",
        peer_netns: None,
        peer_mac: None,
    };
    kernel
        .host()
        .and_then(|mut host| host.create_link(&cni_net::LinkSpec::new("eth9", kind)))
        .expect("master");
    let invoke = Invoke::table_only(rcni::plugin, kernel.clone());
    let cx = Context {
        kernel: &kernel,
        delegate: &invoke,
    };
    let env = |name: &str| {
        Some(match name {
            "CNI_COMMAND" => command.to_string(),
            "CNI_CONTAINERID" => "fuzz".into(),
            "CNI_NETNS" => "/fake/ctr".into(),
            "CNI_IFNAME" => "eth0".into(),
            "CNI_PATH" => "/nonexistent".into(),
            _ => return None,
        })
    };
    let dispatch = rcni::plugin(plugin).expect("plugin");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cni_skel::run(
        dispatch,
        &cx,
        &env,
        &mut stdin.as_bytes(),
        &mut out,
        &mut err,
    );
    (code, String::from_utf8_lossy(&out).into_owned())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(250), ..ProptestConfig::default() })]

    #[test]
    fn every_plugin_answers_any_config_with_a_result_or_an_error(
        plugin in prop::sample::select(vec!["bridge", "ptp", "loopback", "host-local", "static", "portmap", "macvlan", "ipvlan", "vlan", "dummy", "tap", "host-device", "tuning", "firewall", "bandwidth", "sbr", "vrf"]),
        body in prop_oneof![3 => typed_body(), 1 => doc()],
        ipam in typed_ipam(),
        version in prop_oneof![8 => Just("1.1.0"), 1 => Just("0.3.1"), 1 => Just("9.9.9")],
        command in prop_oneof![4 => Just("ADD"), 2 => Just("DEL"), 1 => Just("CHECK"), 1 => Just("GC"), 1 => Just("STATUS")],
    ) {
        let state = tempfile::tempdir().unwrap();
        let stdin = config(plugin, body, ipam, version, state.path());
        let (code, out) = run(plugin, command, &stdin);
        prop_assert!(code == 0 || code == 1, "{plugin} {command} exited {code}: {stdin}");
        if code == 1 {
            let error: Value = serde_json::from_str(&out).map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
            prop_assert!(error["code"].is_u64() && error["msg"].is_string(), "{out}");
        } else if !out.is_empty() {
            let result: Value = serde_json::from_str(&out).map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
            prop_assert!(result["cniVersion"].is_string(), "{out}");
        }
    }
}
