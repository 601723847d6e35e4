//! loopback against the kernel: every test runs the real binary inside a sandbox's
//! "host" namespace on the sandbox's container namespace, and reads the outcome back
//! with `ip`, never from the plugin's own claims.

mod common;

use cni_testkit::{Call, PluginOutput, Sandbox, require_root};
use common::{error_of, go_plugin, plugin};
use serde_json::{Value, json};

fn conf(version: &str) -> String {
    format!(r#"{{"cniVersion":"{version}","name":"lo-net","type":"loopback"}}"#)
}

fn call<'a>(sandbox: &'a str, command: &'a str) -> Call<'a> {
    Call {
        command,
        container_id: "ctr-1",
        netns: sandbox,
        ifname: "eth0",
        path: "/opt/cni/bin",
        ..Default::default()
    }
}

fn ok(out: PluginOutput) -> String {
    assert_eq!(
        out.code, 0,
        "plugin failed: stdout {:?} stderr {:?}",
        out.stdout, out.stderr
    );
    out.stdout
}

/// `lo` in the container as `ip -j` reports it: (is it up, its addresses).
fn lo_state(sandbox: &Sandbox) -> (bool, Vec<String>) {
    let json: Value = serde_json::from_str(&sandbox.ip(
        sandbox.container_name(),
        &["-j", "addr", "show", "dev", "lo"],
    ))
    .expect("ip -j output");
    let lo = &json[0];
    let up = lo["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .any(|f| f == "UP");
    let addrs = lo["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| format!("{}/{}", i["local"].as_str().unwrap_or(""), i["prefixlen"]))
                .collect()
        })
        .unwrap_or_default();
    (up, addrs)
}

#[test]
fn add_check_del_against_the_kernel() {
    require_root!();
    let sandbox = Sandbox::new();
    let netns = sandbox.container_path();
    let lo = plugin("loopback");
    assert!(!lo_state(&sandbox).0, "a new netns starts with lo down");

    let result: Value = serde_json::from_str(&ok(sandbox.run_plugin(
        &lo,
        &call(&netns, "ADD"),
        &conf("1.0.0"),
    )))
    .expect("result JSON");
    let (up, addrs) = lo_state(&sandbox);
    assert!(up, "lo is up after ADD");
    assert_eq!(addrs, ["127.0.0.1/8", "::1/128"]);
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": netns}],
            "ips": [{"interface": 0, "address": "127.0.0.1/8"}, {"interface": 0, "address": "::1/128"}]
        })
    );

    assert_eq!(
        ok(sandbox.run_plugin(&lo, &call(&netns, "CHECK"), &conf("1.0.0"))),
        ""
    );
    assert_eq!(
        ok(sandbox.run_plugin(&lo, &call(&netns, "DEL"), &conf("1.0.0"))),
        ""
    );
    assert!(!lo_state(&sandbox).0, "lo is down after DEL");

    let check = sandbox.run_plugin(&lo, &call(&netns, "CHECK"), &conf("1.0.0"));
    assert_eq!(
        error_of(&check.stdout),
        (999, "loopback interface is down".into(), String::new())
    );

    // DEL is idempotent.
    assert_eq!(
        ok(sandbox.run_plugin(&lo, &call(&netns, "DEL"), &conf("1.0.0"))),
        ""
    );
    sandbox.assert_no_leaks();
}

#[test]
fn del_succeeds_when_the_netns_is_gone_or_not_given() {
    require_root!();
    let sandbox = Sandbox::new();
    let lo = plugin("loopback");
    let gone = format!("{}-gone", sandbox.container_path());
    assert_eq!(
        ok(sandbox.run_plugin(&lo, &call(&gone, "DEL"), &conf("1.0.0"))),
        ""
    );
    assert_eq!(
        ok(sandbox.run_plugin(&lo, &call("", "DEL"), &conf("1.0.0"))),
        ""
    );
    // Never added: DEL still succeeds and changes nothing.
    assert_eq!(
        ok(sandbox.run_plugin(&lo, &call(&sandbox.container_path(), "DEL"), &conf("0.4.0"))),
        ""
    );
    // ADD and CHECK do need it.
    let add = sandbox.run_plugin(&lo, &call(&gone, "ADD"), &conf("1.0.0"));
    assert_eq!(error_of(&add.stdout).0, 999);
    sandbox.assert_no_leaks();
}

#[test]
fn the_result_has_the_shape_of_every_requested_version() {
    require_root!();
    let sandbox = Sandbox::new();
    let netns = sandbox.container_path();
    let lo = plugin("loopback");
    for version in cni_types::version::ALL {
        let out: Value = serde_json::from_str(&ok(sandbox.run_plugin(
            &lo,
            &call(&netns, "ADD"),
            &conf(version),
        )))
        .expect("result JSON");
        assert_eq!(out["cniVersion"], version);
        match version {
            "0.1.0" | "0.2.0" => {
                assert_eq!(out["ip4"], json!({"ip": "127.0.0.1/8"}), "{version}");
                assert_eq!(out["ip6"], json!({"ip": "::1/128"}), "{version}");
                assert_eq!(out["dns"], json!({}));
            }
            "0.3.0" | "0.3.1" | "0.4.0" => {
                assert_eq!(
                    out["ips"][0],
                    json!({"version": "4", "interface": 0, "address": "127.0.0.1/8"})
                );
                assert_eq!(
                    out["ips"][1],
                    json!({"version": "6", "interface": 0, "address": "::1/128"})
                );
                assert_eq!(out["dns"], json!({}));
            }
            _ => {
                assert_eq!(
                    out["ips"][0],
                    json!({"interface": 0, "address": "127.0.0.1/8"})
                );
                assert!(out.get("dns").is_none());
            }
        }
    }
    ok(sandbox.run_plugin(&lo, &call(&netns, "DEL"), &conf("1.1.0")));
    sandbox.assert_no_leaks();
}

#[test]
fn a_prev_result_is_passed_through_unchanged() {
    require_root!();
    let sandbox = Sandbox::new();
    let netns = sandbox.container_path();
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": netns}],
        "ips": [{"interface": 0, "address": "10.22.0.5/16", "gateway": "10.22.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.22.0.1"]}
    });
    let stdin =
        json!({"cniVersion": "1.0.0", "name": "lo-net", "type": "loopback", "prevResult": prev})
            .to_string();
    let out: Value = serde_json::from_str(&ok(sandbox.run_plugin(
        &plugin("loopback"),
        &call(&netns, "ADD"),
        &stdin,
    )))
    .expect("JSON");
    assert_eq!(out, prev);
    assert!(lo_state(&sandbox).0, "lo is still brought up");
    ok(sandbox.run_plugin(&plugin("loopback"), &call(&netns, "DEL"), &stdin));
    sandbox.assert_no_leaks();
}

#[test]
fn a_non_loopback_address_on_lo_is_an_error() {
    require_root!();
    let sandbox = Sandbox::new();
    sandbox.ip(
        sandbox.container_name(),
        &["addr", "add", "10.99.0.1/24", "dev", "lo"],
    );
    let out = sandbox.run_plugin(
        &plugin("loopback"),
        &call(&sandbox.container_path(), "ADD"),
        &conf("1.0.0"),
    );
    assert_eq!(
        error_of(&out.stdout),
        (
            999,
            "loopback interface found with non-loopback address \"10.99.0.1\"".into(),
            String::new()
        )
    );
}

#[test]
fn the_plugins_own_netns_is_refused_unless_overridden() {
    require_root!();
    let sandbox = Sandbox::new();
    let lo = plugin("loopback");
    let own = sandbox.host_path();
    let host_lo_up = || {
        let link = &common::ip_json(&sandbox, sandbox.host_name(), &["link", "show", "lo"])[0];
        link["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP"))
    };
    sandbox.ip(sandbox.host_name(), &["link", "set", "lo", "up"]);
    // ADD is refused before it changes anything.
    let out = sandbox.run_plugin(&lo, &call(&own, "ADD"), &conf("1.0.0"));
    assert_eq!(
        error_of(&out.stdout),
        (
            8,
            "plugin's netns and netns from CNI_NETNS should not be the same".into(),
            String::new()
        )
    );
    // DEL succeeds and leaves the plugin's own namespace alone (upstream sets its
    // lo down, then reports code 8).
    ok(sandbox.run_plugin(&lo, &call(&own, "DEL"), &conf("1.0.0")));
    assert!(host_lo_up(), "DEL in the own netns must not touch it");
    for verb in ["ADD", "DEL"] {
        for value in ["1", "true", "TRUE"] {
            let overridden = Call {
                extra: vec![("CNI_NETNS_OVERRIDE", value)],
                ..call(&own, verb)
            };
            ok(sandbox.run_plugin(&lo, &overridden, &conf("1.0.0")));
        }
    }
}

#[test]
fn interop_with_the_go_loopback() {
    require_root!();
    let Some(go) = go_plugin("loopback") else {
        return;
    };
    let ours = plugin("loopback");
    let sandbox = Sandbox::new();
    let netns = sandbox.container_path();

    // Same addresses and interfaces reported at 1.0.0 (Go 1.1.1 also writes an empty dns).
    let go_out: Value = serde_json::from_str(&ok(sandbox.run_plugin(
        &go,
        &call(&netns, "ADD"),
        &conf("1.0.0"),
    )))
    .expect("go");
    let our_out: Value = serde_json::from_str(&ok(sandbox.run_plugin(
        &ours,
        &call(&netns, "ADD"),
        &conf("1.0.0"),
    )))
    .expect("ours");
    for key in ["cniVersion", "interfaces", "ips"] {
        assert_eq!(our_out[key], go_out[key], "{key}");
    }

    // Each DELs what the other ADDed, and CHECKs it.
    ok(sandbox.run_plugin(&go, &call(&netns, "CHECK"), &conf("1.0.0")));
    ok(sandbox.run_plugin(&go, &call(&netns, "DEL"), &conf("1.0.0")));
    assert!(!lo_state(&sandbox).0);
    ok(sandbox.run_plugin(&go, &call(&netns, "ADD"), &conf("1.0.0")));
    ok(sandbox.run_plugin(&ours, &call(&netns, "CHECK"), &conf("1.0.0")));
    ok(sandbox.run_plugin(&ours, &call(&netns, "DEL"), &conf("1.0.0")));
    assert!(!lo_state(&sandbox).0);
    sandbox.assert_no_leaks();
}

#[test]
fn a_panic_in_a_test_still_removes_the_sandbox() {
    require_root!();
    let names = std::panic::catch_unwind(|| {
        let sandbox = Sandbox::new();
        let names = (sandbox.host_path(), sandbox.container_path());
        assert!(std::path::Path::new(&names.0).exists());
        panic!("{}|{}", names.0, names.1);
    })
    .expect_err("panicked");
    let text = names.downcast_ref::<String>().expect("message").clone();
    for path in text.split('|') {
        assert!(
            !std::path::Path::new(path).exists(),
            "{path} removed on unwind"
        );
    }
}
