//! Bounded fuzzing (proptest, on stable) of everything that reads outside input:
//! configurations and configuration lists, results of every version and every
//! conversion between them, prevResult, and `CNI_ARGS`. Any input gives a value or
//! an error; none panics.

use cni_types::config::{NetConfList, PluginConf};
use cni_types::result::{Result as CniResult, parse_prev_result};
use cni_types::version::ALL;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Keys the parsers know, so random documents reach deep into them.
const KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "ipam",
    "dns",
    "args",
    "runtimeConfig",
    "prevResult",
    "capabilities",
    "plugins",
    "disableCheck",
    "disableGC",
    "cni.dev/valid-attachments",
    "containerID",
    "ifname",
    "interfaces",
    "ips",
    "routes",
    "address",
    "gateway",
    "interface",
    "version",
    "mac",
    "sandbox",
    "mtu",
    "socketPath",
    "pciID",
    "dst",
    "gw",
    "mtu",
    "advmss",
    "priority",
    "table",
    "scope",
    "nameservers",
    "domain",
    "search",
    "options",
    "ip4",
    "ip6",
    "ip",
    "code",
    "msg",
    "details",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        prop::sample::select(vec![
            "10.1.2.3/24",
            "10.1.2.1",
            "fd00::1/64",
            "fd00::1",
            "0.0.0.0/0",
            "::/0",
            "eth0",
            "1.0.0",
            "0.4.0",
            "0.2.0",
            "0.3.1",
            "1.1.0",
            "4",
            "6",
            "",
            "aa:bb:cc:dd:ee:ff",
            "10.1.2.3/33",
            "::ffff:1.2.3.4/120",
            "garbage",
        ])
        .prop_map(|s| Value::String(s.into())),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(KEYS.to_vec()).prop_map(String::from),
                        "[a-zA-Z]{1,6}"
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Results shaped like real ones, with values that are sometimes wrong.
fn result_like() -> impl Strategy<Value = Value> {
    let address = prop::sample::select(vec![
        "10.1.2.3/24",
        "fd00::5/64",
        "10.1.2.3",
        "1.2.3.4/32",
        "::1/128",
        "x",
        "",
    ]);
    let ip = prop::sample::select(vec!["10.1.2.1", "fd00::1", "", "nope", "::"]);
    let ips = proptest::collection::vec(
        (
            address.clone(),
            ip.clone(),
            proptest::option::of(-2i64..4),
            prop::sample::select(vec!["4", "6", "", "9"]),
        ),
        0..4,
    );
    let ifaces = proptest::collection::vec(
        (
            ".{0,6}",
            prop::sample::select(vec!["", "aa:bb:cc:dd:ee:ff", "z"]),
            ".{0,6}",
        ),
        0..3,
    );
    let routes = proptest::collection::vec((address, proptest::option::of(ip)), 0..3);
    (prop::sample::select(ALL.to_vec()), ips, ifaces, routes, any::<bool>()).prop_map(
        |(version, ips, ifaces, routes, old)| {
            let ips: Vec<Value> = ips
                .into_iter()
                .map(|(address, gateway, interface, v)| {
                    let mut ip = serde_json::json!({"address": address, "gateway": gateway, "version": v});
                    if let Some(i) = interface {
                        ip["interface"] = Value::from(i);
                    }
                    ip
                })
                .collect();
            let interfaces: Vec<Value> = ifaces
                .into_iter()
                .map(|(name, mac, sandbox)| serde_json::json!({"name": name, "mac": mac, "sandbox": sandbox}))
                .collect();
            let routes: Vec<Value> = routes
                .into_iter()
                .map(|(dst, gw)| serde_json::json!({"dst": dst, "gw": gw}))
                .collect();
            if old {
                serde_json::json!({"cniVersion": version,
                    "ip4": {"ip": ips.first().map(|i| i["address"].clone()), "routes": routes},
                    "dns": {"nameservers": ["1.1.1.1"]}})
            } else {
                serde_json::json!({"cniVersion": version, "interfaces": interfaces, "ips": ips,
                    "routes": routes, "dns": {"nameservers": ["1.1.1.1"], "search": ["x"]}})
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1500), ..ProptestConfig::default() })]

    #[test]
    fn plausible_results_convert_to_every_version_without_panicking(doc in result_like()) {
        let version = doc["cniVersion"].as_str().unwrap_or_default().to_string();
        for as_version in [version.as_str()].into_iter().chain(ALL) {
            if let Ok(result) = CniResult::from_value_as(as_version, doc.clone()) {
                for to in ALL {
                    if let Ok(converted) = result.convert(to) {
                        let _ = converted.to_json_pretty();
                    }
                }
            }
            let _ = parse_prev_result(as_version, doc.clone());
        }
    }

    #[test]
    fn configurations_never_panic(doc in document()) {
        let _ = PluginConf::from_value(doc.clone());
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let _ = PluginConf::from_slice(&bytes);
        let _ = NetConfList::from_slice(&bytes);
    }

    #[test]
    fn results_of_every_version_convert_without_panicking(doc in document()) {
        for version in ALL {
            let _ = parse_prev_result(version, doc.clone());
            if let Ok(result) = CniResult::from_value_as(version, doc.clone()) {
                for to in ALL {
                    if let Ok(converted) = result.convert(to) {
                        let _ = converted.to_json_pretty();
                    }
                }
                let _ = result.to_current();
            }
        }
    }

    #[test]
    fn cni_args_never_panic(text in "[A-Za-z0-9=;._:/ -]{0,80}") {
        let _ = cni_types::args::load(&text, &["IP", "MAC", "GATEWAY", "K8S_POD_NAME"]);
    }

    #[test]
    fn raw_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = PluginConf::from_slice(&bytes);
        let _ = NetConfList::from_slice(&bytes);
        let _ = CniResult::from_slice(&bytes);
    }
}
