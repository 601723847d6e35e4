//! cnitool as a user runs it: with the noop double for the runtime rules (no root
//! needed), and in a sandbox with Debian's Go plugins for the seed walkthrough.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cni_testkit::{Sandbox, noop_calls, plugin_dir_with, require_root, workspace_binary};
use serde_json::{Value, json};

const CNITOOL: &str = env!("CARGO_BIN_EXE_cnitool");
const GO_PLUGINS: &str = "/usr/lib/cni";

/// A NETCONFPATH, CNI_PATH and cache of one test.
struct Setup {
    state: tempfile::TempDir,
    bin: PathBuf,
}

impl Setup {
    fn new(bin: PathBuf) -> Setup {
        let state = tempfile::tempdir().expect("state");
        std::fs::create_dir_all(state.path().join("net.d")).expect("net.d");
        Setup { state, bin }
    }

    fn conf(&self, file: &str, content: &Value) {
        std::fs::write(
            self.state.path().join("net.d").join(file),
            content.to_string(),
        )
        .expect("write conf");
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "NETCONFPATH".into(),
                self.state.path().join("net.d").display().to_string(),
            ),
            ("CNI_PATH".into(), self.bin.display().to_string()),
            ("CNI_CACHE_DIR".into(), self.cache().display().to_string()),
        ]
    }

    fn cache(&self) -> PathBuf {
        self.state.path().join("cache")
    }

    fn cached_files(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.cache().join("results")) else {
            return Vec::new();
        };
        dir.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Runs cnitool in this process's netns (only for plugins that touch nothing).
    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        Command::new(CNITOOL)
            .args(args)
            .env_remove("CNI_IFNAME")
            .env_remove("CNI_ARGS")
            .env_remove("CAP_ARGS")
            .envs(self.env())
            .envs(extra.iter().copied())
            .output()
            .expect("run cnitool")
    }

    /// Runs cnitool inside the sandbox's host netns.
    fn run_in(&self, sandbox: &Sandbox, args: &[&str]) -> Output {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        sandbox.run_in_host(Path::new(CNITOOL), args, &env)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "cnitool failed ({}): {}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// A setup whose only plugin is the noop double, logging to `<state>/debug.log`.
fn noop_setup() -> (Setup, tempfile::TempDir, String) {
    let bin = plugin_dir_with(&[("noop", &workspace_binary("cni-test-noop"))]);
    let setup = Setup::new(bin.path().to_path_buf());
    let debug = setup.state.path().join("debug").display().to_string();
    (setup, bin, debug)
}

fn calls(debug: &str) -> Vec<Value> {
    noop_calls(Path::new(&format!("{debug}.log")))
}

#[test]
fn runtime_inputs_come_from_the_environment_as_upstream() {
    let (setup, _bin, debug) = noop_setup();
    std::fs::write(
        &debug,
        json!({"reportResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}})
            .to_string(),
    )
    .expect("instructions");
    setup.conf(
        "10-n.conflist",
        &json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
            {"type": "noop", "debugFile": debug, "capabilities": {"portMappings": true}}]}),
    );
    let netns = "/tmp/cnitool-test/../no-such-netns";
    let out = setup.run(
        &["add", "n", netns],
        &[
            ("CNI_ARGS", "FOO=BAR;IgnoreUnknown=1"),
            (
                "CAP_ARGS",
                r#"{"portMappings":[{"hostPort":80}],"mac":"x"}"#,
            ),
            ("CNI_IFNAME", "net1"),
        ],
    );
    let printed = ok(&out);
    assert_eq!(
        printed,
        "{\n    \"cniVersion\": \"1.0.0\",\n    \"ips\": [\n        {\n            \"address\": \"10.0.0.2/24\"\n        }\n    ]\n}",
        "4-space JSON, no trailing newline"
    );
    let call = &calls(&debug)[0];
    // python3 -c "import hashlib; print(hashlib.sha512(b'/tmp/no-such-netns').hexdigest()[:20])"
    assert_eq!(call["containerID"], "cnitool-78e62b6c108a0a45823a");
    assert_eq!(
        call["netns"], "/tmp/no-such-netns",
        "made absolute and clean"
    );
    assert_eq!(call["ifname"], "net1");
    assert_eq!(call["args"], "FOO=BAR;IgnoreUnknown=1");
    assert_eq!(
        call["stdin"]["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 80}]})
    );
    assert_eq!(
        setup.cached_files(),
        ["n-cnitool-78e62b6c108a0a45823a-net1"]
    );

    // -i wins over CNI_IFNAME; check and del are silent.
    let out = setup.run(
        &["check", "n", netns, "-i", "net1"],
        &[("CNI_IFNAME", "other")],
    );
    assert_eq!(ok(&out), "");
    assert_eq!(
        calls(&debug)[1]["stdin"]["prevResult"]["ips"][0]["address"],
        "10.0.0.2/24"
    );
    assert_eq!(ok(&setup.run(&["-i", "net1", "del", "n", netns], &[])), "");
    assert!(setup.cached_files().is_empty());
}

#[test]
fn usage_and_input_errors_exit_1() {
    let (setup, _bin, debug) = noop_setup();
    setup.conf("n.conflist", &json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "noop", "debugFile": debug}]}));
    for (args, env, message) in [
        (
            &["add", "n"][..],
            &[][..],
            "required arguments were not provided",
        ),
        (
            &["add", "n", "/x"],
            &[("CNI_ARGS", "FOO")][..],
            "invalid CNI_ARGS pair \"FOO\"",
        ),
        (
            &["add", "n", "/x"],
            &[("CNI_ARGS", "A=B=C")],
            "invalid CNI_ARGS pair \"A=B=C\"",
        ),
        (
            &["add", "n", "/x"],
            &[("CAP_ARGS", "[")],
            "invalid CAP_ARGS",
        ),
        (
            &["add", "nope", "/x"],
            &[],
            "no net configuration with name \"nope\" in",
        ),
        (&["frobnicate"], &[], "unrecognized subcommand"),
    ] {
        let out = setup.run(args, env);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    for command in ["add", "check", "del", "gc", "status", "exec", "list"] {
        let out = setup.run(&[command, "--help"], &[]);
        assert!(ok(&out).contains("Usage: cnitool"), "{command} --help");
    }
    // A plugin's error is printed with upstream's context.
    std::fs::write(&debug, json!({"reportError": "banana"}).to_string()).expect("write");
    let out = setup.run(&["add", "n", "/x"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: plugin type=\"noop\" failed (add): banana\n"
    );
}

#[test]
fn gc_keeps_the_valid_attachments_and_status_reports_codes() {
    let (setup, _bin, debug) = noop_setup();
    setup.conf("n.conflist", &json!({"cniVersion": "1.1.0", "name": "n", "plugins": [{"type": "noop", "debugFile": debug}]}));
    for ns in ["/run/netns/a", "/run/netns/b"] {
        ok(&setup.run(&["add", "n", ns], &[]));
    }
    ok(&setup.run(&["add", "n", "/run/netns/c", "-i", "net1"], &[]));
    assert_eq!(setup.cached_files().len(), 3);
    ok(&setup.run(
        &[
            "gc",
            "n",
            "/run/netns/a",
            "--valid",
            "/run/netns/a",
            "--valid",
            "/run/netns/c:net1",
        ],
        &[],
    ));
    let left = setup.cached_files();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|f| !f.contains(&cni_id("/run/netns/b"))));
    let gc = calls(&debug)
        .into_iter()
        .rfind(|c| c["command"] == "GC")
        .expect("a GC call");
    assert_eq!(
        gc["stdin"]["cni.dev/valid-attachments"],
        json!([{"containerID": cni_id("/run/netns/a"), "ifname": "eth0"},
               {"containerID": cni_id("/run/netns/c"), "ifname": "net1"}])
    );
    // As upstream: no valid attachments given, everything cached goes.
    ok(&setup.run(&["gc", "n", "/run/netns/a"], &[]));
    assert!(setup.cached_files().is_empty());

    ok(&setup.run(&["status", "n", "/run/netns/a"], &[]));
    std::fs::write(
        &debug,
        json!({"reportError": "no addresses left", "reportErrorCode": 50}).to_string(),
    )
    .expect("write");
    let out = setup.run(&["status", "n", "/run/netns/a"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "Error: no addresses left\n");
}

fn cni_id(netns: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha512::digest(netns.as_bytes());
    format!(
        "cnitool-{}",
        digest[..10]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

#[test]
fn list_shows_networks_plugins_and_versions() {
    let (setup, _bin, _debug) = noop_setup();
    setup.conf("10-a.conflist", &json!({"cniVersion": "1.0.0", "name": "a", "plugins": [{"type": "noop"}, {"type": "missing"}]}));
    setup.conf(
        "20-b.conf",
        &json!({"cniVersion": "0.4.0", "name": "b", "type": "noop"}),
    );
    let out = ok(&setup.run(&["list"], &[]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("a (cniVersion 1.0.0) from ") && lines[0].ends_with("10-a.conflist"),
        "{out}"
    );
    assert!(
        lines[1].contains("noop")
            && lines[1].contains("supports 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
        "{out}"
    );
    assert!(
        lines[2].contains("missing")
            && lines[2].contains("not usable: failed to find plugin \"missing\""),
        "{out}"
    );
    assert!(lines[3].starts_with("b (cniVersion 0.4.0) from "), "{out}");
}

// ----- the seed walkthrough with upstream's Go plugins, in a sandbox -----

fn go_plugins() -> Option<PathBuf> {
    let dir = PathBuf::from(GO_PLUGINS);
    if dir.join("bridge").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {GO_PLUGINS}/bridge not installed (Debian package containernetworking-plugins)"
        );
        None
    }
}

/// mynet as in upstream's README: bridge cni0 with masquerade, host-local
/// 10.22.0.0/16 with a default route, cniVersion 1.0.0; plus loopback.
fn seed_setup(sandbox: &Sandbox, bin: PathBuf) -> Setup {
    let setup = Setup::new(bin);
    let data_dir = sandbox.state_dir().join("ipam");
    setup.conf(
        "10-mynet.conflist",
        &json!({"cniVersion": "1.0.0", "name": "mynet", "plugins": [{
            "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
            "ipam": {"type": "host-local", "subnet": "10.22.0.0/16",
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data_dir}}]}),
    );
    setup.conf(
        "99-loopback.conf",
        &json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}),
    );
    setup
}

fn address_files(sandbox: &Sandbox) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(sandbox.state_dir().join("ipam/mynet")) else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10.22."))
        .collect()
}

fn veths(sandbox: &Sandbox) -> Vec<String> {
    sandbox
        .ip(sandbox.host_name(), &["-o", "link", "show", "type", "veth"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn seed_walkthrough_with_go_plugins() {
    require_root!();
    let Some(bin) = go_plugins() else { return };
    let sandbox = Sandbox::new();
    let setup = seed_setup(&sandbox, bin);
    let netns = sandbox.container_path();

    ok(&setup.run_in(&sandbox, &["add", "lo", &netns, "-i", "lo"]));
    let result: Value =
        serde_json::from_str(&ok(&setup.run_in(&sandbox, &["add", "mynet", &netns])))
            .expect("result JSON");
    let address = result["ips"][0]["address"]
        .as_str()
        .expect("an address")
        .to_string();
    assert!(address.starts_with("10.22."), "{result}");
    let ip = address.split('/').next().expect("ip");

    // What the kernel shows, not what the result says.
    let addr = sandbox.ip(
        sandbox.container_name(),
        &["-o", "-4", "addr", "show", "dev", "eth0"],
    );
    assert!(addr.contains(&format!("inet {address}")), "{addr}");
    let route = sandbox.ip(
        sandbox.container_name(),
        &["-4", "route", "show", "default"],
    );
    assert!(route.contains("default via 10.22.0.1 dev eth0"), "{route}");
    let ping = sandbox.exec_in_container("ping", &["-c", "1", "-W", "2", "10.22.0.1"]);
    assert!(
        ping.status.success(),
        "ping the gateway: {}",
        text(&ping.stdout)
    );
    assert_eq!(address_files(&sandbox), [ip.to_string()]);
    assert_eq!(veths(&sandbox).len(), 1);
    assert_eq!(setup.cached_files().len(), 2, "lo and mynet");

    ok(&setup.run_in(&sandbox, &["check", "mynet", &netns]));
    ok(&setup.run_in(&sandbox, &["check", "lo", &netns, "-i", "lo"]));

    ok(&setup.run_in(&sandbox, &["del", "mynet", &netns]));
    ok(&setup.run_in(&sandbox, &["del", "lo", &netns, "-i", "lo"]));
    assert!(veths(&sandbox).is_empty(), "the veth is gone");
    assert!(
        sandbox
            .ip(sandbox.container_name(), &["-o", "link", "show"])
            .lines()
            .all(|l| !l.contains("eth0")),
        "eth0 is gone"
    );
    assert!(
        address_files(&sandbox).is_empty(),
        "the address is released"
    );
    assert!(setup.cached_files().is_empty(), "the cache files are gone");
    // DEL again is fine.
    ok(&setup.run_in(&sandbox, &["del", "mynet", &netns]));
}

fn cnitool_netns_left(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let prefix = format!("cnitool-{pid}-");
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn exec_runs_a_command_in_an_attached_throwaway_netns() {
    require_root!();
    let Some(bin) = go_plugins() else { return };
    let sandbox = Sandbox::new();
    let setup = seed_setup(&sandbox, bin);
    let out = setup.run_in(&sandbox, &["exec", "mynet", "--", "ip", "addr"]);
    let printed = ok(&out);
    assert!(printed.contains("eth0@"), "{printed}");
    assert!(printed.contains("inet 10.22."), "{printed}");
    assert!(printed.contains("inet 127.0.0.1/8"), "lo is up: {printed}");
    assert!(veths(&sandbox).is_empty(), "detached after");
    assert!(address_files(&sandbox).is_empty());
    assert!(setup.cached_files().is_empty());

    // The command's exit code is cnitool's.
    let out = setup.run_in(&sandbox, &["exec", "mynet", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert!(veths(&sandbox).is_empty());
}

#[test]
fn exec_cleans_up_when_an_add_fails() {
    require_root!();
    let Some(go) = go_plugins() else { return };
    let bin = plugin_dir_with(&[
        ("bridge", &go.join("bridge")),
        ("host-local", &go.join("host-local")),
        ("loopback", &go.join("loopback")),
        ("tuning", &go.join("tuning")),
    ]);
    let sandbox = Sandbox::new();
    let setup = seed_setup(&sandbox, bin.path().to_path_buf());
    let data_dir = sandbox.state_dir().join("ipam");
    setup.conf(
        "10-mynet.conflist",
        &json!({"cniVersion": "1.0.0", "name": "mynet", "plugins": [
            {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.22.0.0/16", "dataDir": data_dir}},
            // Fails its ADD (no such sysctl), and its DEL succeeds, so the list's DEL
            // can undo the bridge. (A missing plugin would stop the DEL, as upstream.)
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}}]}),
    );
    let out = setup.run_in(&sandbox, &["exec", "mynet", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("plugin type=\"tuning\" failed (add)"),
        "{}",
        text(&out.stderr)
    );
    assert!(veths(&sandbox).is_empty(), "the bridge ADD was undone");
    assert!(address_files(&sandbox).is_empty());
    assert!(setup.cached_files().is_empty());
}

#[test]
fn exec_cleans_up_on_ctrl_c() {
    require_root!();
    let Some(bin) = go_plugins() else { return };
    let sandbox = Sandbox::new();
    let setup = seed_setup(&sandbox, bin);
    // The command says when it runs, so the signal surely reaches it (not the setup).
    let ready = sandbox.state_dir().join("ready");
    let script = format!("touch {}; exec sleep 30", ready.display());
    let child = sandbox
        .host
        .run(|| {
            Command::new(CNITOOL)
                .args(["exec", "mynet", "--", "sh", "-c", &script])
                .envs(setup.env())
                .spawn()
        })
        .expect("enter host netns")
        .expect("spawn cnitool");
    let pid = child.id();
    let started = std::time::Instant::now();
    while !ready.exists() {
        assert!(started.elapsed().as_secs() < 20, "the command never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(veths(&sandbox).len(), 1, "attached while it runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal cnitool");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "sleep ended by SIGINT");
    assert!(veths(&sandbox).is_empty(), "detached");
    assert!(address_files(&sandbox).is_empty());
    assert!(setup.cached_files().is_empty());
    assert!(cnitool_netns_left(pid).is_empty(), "netns removed");
}
