//! The scripts in `scripts/`: exec-plugins.sh with the noop double (what each plugin
//! got), priv-net-run.sh with Debian's Go plugins in a sandbox.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cni_testkit::{Sandbox, noop_calls, plugin_dir_with, require_root, workspace_binary};
use serde_json::{Value, json};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn has_jq() -> bool {
    let found = Command::new("jq").arg("--version").output().is_ok();
    if !found {
        eprintln!("skipped: jq is not installed (scripts/test.sh installs it)");
    }
    found
}

fn run(args: &[&str], netconf: &Path, cni_path: &Path) -> Output {
    Command::new(script("exec-plugins.sh"))
        .args(args)
        .env("NETCONFPATH", netconf)
        .env("CNI_PATH", cni_path)
        .env_remove("DEBUG")
        .output()
        .expect("run exec-plugins.sh")
}

#[test]
fn exec_plugins_usage() {
    let out = Command::new(script("exec-plugins.sh"))
        .arg("add")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).starts_with("Usage: "),
        "{}",
        text(&out.stdout)
    );
    let out = Command::new(script("priv-net-run.sh"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).starts_with("Usage: "));
}

#[test]
fn exec_plugins_runs_every_conf_file_in_order() {
    if !has_jq() {
        return;
    }
    let bin = plugin_dir_with(&[("noop", &workspace_binary("cni-test-noop"))]);
    let state = tempfile::tempdir().expect("state");
    let netconf = state.path().join("net.d");
    std::fs::create_dir_all(&netconf).expect("mkdir");
    let debug = |id: &str, instructions: Value| {
        let path = state.path().join(id);
        let mut instructions = instructions;
        instructions["commandLog"] = json!(state.path().join("calls"));
        std::fs::write(&path, instructions.to_string()).expect("write");
        path.display().to_string()
    };
    let first = json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}], "dns": {}});
    std::fs::write(
        netconf.join("10-list.conf"),
        json!({"cniVersion": "0.4.0", "name": "alist", "plugins": [
            {"type": "noop", "debugFile": debug("p1", json!({"reportResult": first})), "note": "with spaces"},
            {"type": "noop", "debugFile": debug("p2", json!({"reportResult": "PASSTHROUGH"}))}]})
        .to_string(),
    )
    .expect("write");
    std::fs::write(
        netconf.join("20-single.conf"),
        json!({"cniVersion": "0.4.0", "name": "single", "type": "noop", "debugFile": debug("p3", json!({}))}).to_string(),
    )
    .expect("write");
    std::fs::write(netconf.join("30-ignored.conflist"), "{}").expect("write");

    for verb in ["add", "del"] {
        let out = run(&[verb, "c1", "/run/netns/none"], &netconf, bin.path());
        assert!(
            out.status.success(),
            "{verb}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let calls = noop_calls(&state.path().join("calls"));
    let seen: Vec<(String, String, String)> = calls
        .iter()
        .map(|c| {
            let id = Path::new(c["debugFile"].as_str().unwrap_or_default())
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (
                c["command"].as_str().unwrap_or_default().into(),
                id,
                c["ifname"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let expected = |cmd: &str| {
        vec![
            (cmd.to_string(), "p1".to_string(), "eth0".to_string()),
            (cmd.into(), "p2".into(), "eth0".into()),
            (cmd.into(), "p3".into(), "eth1".into()),
        ]
    };
    // As upstream, DEL runs in file order too, without cached results.
    assert_eq!(seen, [expected("ADD"), expected("DEL")].concat());
    let p1 = &calls[0]["stdin"];
    assert_eq!(
        (p1["name"].as_str(), p1["cniVersion"].as_str()),
        (Some("alist"), Some("0.4.0"))
    );
    assert_eq!(p1["note"], "with spaces");
    assert!(p1.get("prevResult").is_none());
    assert_eq!(calls[1]["stdin"]["prevResult"], first, "chained");
    assert!(
        calls[2]["stdin"].get("prevResult").is_none(),
        "no leak into the next network"
    );
    assert_eq!(calls[0]["containerID"], "c1");
    assert_eq!(calls[0]["netns"], "/run/netns/none");

    // A failing plugin stops the run with its message.
    std::fs::write(
        state.path().join("p2"),
        json!({"reportError": "no way"}).to_string(),
    )
    .expect("write");
    let out = run(&["add", "c1", "/run/netns/none"], &netconf, bin.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "alist : error executing ADD: no way\n");
}

#[test]
fn priv_net_run_with_go_plugins() {
    require_root!();
    if !has_jq() {
        return;
    }
    let go = Path::new("/usr/lib/cni");
    if !go.join("bridge").is_file() {
        eprintln!("skipped: Go plugins not installed (containernetworking-plugins)");
        return;
    }
    let sandbox = Sandbox::new();
    let netconf = sandbox.state_dir().join("net.d");
    std::fs::create_dir_all(&netconf).expect("mkdir");
    let data_dir = sandbox.state_dir().join("ipam");
    std::fs::write(
        netconf.join("10-mynet.conf"),
        json!({"cniVersion": "0.4.0", "name": "mynet", "type": "bridge", "bridge": "cni0", "isGateway": true,
               "ipam": {"type": "host-local", "subnet": "10.22.0.0/16", "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data_dir}})
        .to_string(),
    )
    .expect("write");
    let env = [
        ("NETCONFPATH", netconf.to_str().expect("utf-8")),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    let out = sandbox.run_in_host(&script("priv-net-run.sh"), &["ip", "addr"], &env);
    let printed = text(&out.stdout);
    assert!(out.status.success(), "{printed}{}", text(&out.stderr));
    assert!(
        printed.contains("eth0@") && printed.contains("inet 10.22."),
        "{printed}"
    );
    let veths = sandbox.ip(sandbox.host_name(), &["-o", "link", "show", "type", "veth"]);
    assert!(veths.is_empty(), "detached after: {veths}");
    let leases: Vec<_> = std::fs::read_dir(data_dir.join("mynet"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                .count()
        })
        .into_iter()
        .collect();
    assert_eq!(leases, [0], "address released");
}
