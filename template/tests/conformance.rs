//! The spec lifecycle (ADD, CHECK, ADD again, DEL twice at every version, DEL never
//! added, empty and gone netns), on the kernel in a sandbox and on the fake kernel.

use cni_testkit::conformance::{FakeTarget, Lifecycle, SandboxTarget};
use cni_testkit::{Sandbox, require_root};
use serde_json::json;

const VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

fn lifecycle() -> Lifecycle {
    Lifecycle {
        conf: json!({"name": "svc", "type": "sample", "address": "192.0.2.10/32"}),
        versions: VERSIONS.to_vec(),
        ifname: "eth0",
        device_dies_with_netns: false,
        main: None,
    }
}

#[test]
fn sample_on_the_kernel() {
    require_root!();
    let sandbox = Sandbox::new();
    let target = SandboxTarget {
        sandbox: &sandbox,
        binary: std::path::Path::new(env!("CARGO_BIN_EXE_sample")),
        path: "/nonexistent".into(),
    };
    lifecycle().run(&target);
}

#[test]
fn sample_on_the_fake_kernel() {
    let table: cni_skel::invoke::PluginTable = |_| None;
    lifecycle().run(&FakeTarget::new(&cni_plugin_template::Sample, table));
}

#[test]
fn the_address_is_on_lo_and_bad_input_is_a_clear_error() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = |command: &str, conf: &serde_json::Value| {
        let call = cni_testkit::Call {
            command,
            container_id: "c1",
            netns: &sandbox.container_path(),
            ifname: "eth0",
            path: "/nonexistent",
            ..Default::default()
        };
        sandbox.run_plugin(
            std::path::Path::new(env!("CARGO_BIN_EXE_sample")),
            &call,
            &conf.to_string(),
        )
    };
    let conf =
        json!({"cniVersion": "1.1.0", "name": "svc", "type": "sample", "address": "192.0.2.10/32"});
    assert_eq!(run("ADD", &conf).code, 0);
    let shown = sandbox.ip(sandbox.container_name(), &["addr", "show", "dev", "lo"]);
    assert!(shown.contains("192.0.2.10/32"), "{shown}");
    assert_eq!(run("DEL", &conf).code, 0);
    let shown = sandbox.ip(sandbox.container_name(), &["addr", "show", "dev", "lo"]);
    assert!(!shown.contains("192.0.2.10"), "{shown}");
    for (address, message) in [("", "\"address\" is required"), ("nope", "invalid address")] {
        let mut bad = conf.clone();
        bad["address"] = address.into();
        let out = run("ADD", &bad);
        assert_eq!(out.code, 1, "{out:?}");
        let error: serde_json::Value = serde_json::from_str(&out.stdout).expect("error JSON");
        let msg = error["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(message), "{msg:?} should say {message:?}");
    }
}
