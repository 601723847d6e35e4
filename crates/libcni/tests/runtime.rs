//! libcni against real plugin processes: the noop double records what each call got
//! (env and stdin) and answers as told, so these tests see exactly what a plugin sees.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cni_testkit::{noop_calls, plugin_dir_with, workspace_binary};
use libcni::{CniConfig, Error, GcArgs, GcAttachment, NetConfList, RuntimeConf};
use serde_json::{Value, json};

/// A plugin directory with the doubles, a state directory and a runtime using both.
struct Runtime {
    bin: tempfile::TempDir,
    state: tempfile::TempDir,
    cni: CniConfig,
}

impl Runtime {
    fn new() -> Runtime {
        let noop = workspace_binary("cni-test-noop");
        let sleep = workspace_binary("cni-test-sleep");
        let bin = plugin_dir_with(&[("noop", &noop), ("sleep", &sleep)]);
        let state = tempfile::tempdir().expect("state dir");
        let cni = CniConfig::new([bin.path().display().to_string()])
            .with_cache_dir(state.path().join("cache"));
        Runtime { bin, state, cni }
    }

    /// Writes a noop instruction file for plugin `id` and returns its path. All
    /// plugins also log to the shared `calls` log.
    fn debug(&self, id: &str, mut instructions: Value) -> String {
        let path = self.state.path().join(id);
        instructions["commandLog"] = json!(self.calls_path());
        std::fs::write(&path, instructions.to_string()).expect("write instructions");
        path.display().to_string()
    }

    fn calls_path(&self) -> PathBuf {
        self.state.path().join("calls")
    }

    /// Every call so far, in order, from the shared log.
    fn calls(&self) -> Vec<Value> {
        noop_calls(&self.calls_path())
    }

    /// `(command, plugin id)` for every call so far.
    fn sequence(&self) -> Vec<(String, String)> {
        self.calls()
            .iter()
            .map(|c| {
                let file = c["debugFile"].as_str().unwrap_or_default();
                let id = Path::new(file).file_name().unwrap_or_default();
                (
                    c["command"].as_str().unwrap_or_default().to_string(),
                    id.to_string_lossy().into_owned(),
                )
            })
            .collect()
    }

    fn cache_file(&self, net: &str, rt: &RuntimeConf) -> PathBuf {
        self.state.path().join(format!(
            "cache/results/{net}-{}-{}",
            rt.container_id, rt.ifname
        ))
    }
}

fn list(value: Value) -> NetConfList {
    NetConfList::from_slice(value.to_string().as_bytes()).expect("valid list")
}

fn rt() -> RuntimeConf {
    let mut capability_args = serde_json::Map::new();
    capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    );
    capability_args.insert("bandwidth".into(), json!({"ingressRate": 1000}));
    RuntimeConf {
        container_id: "c1".into(),
        netns: "/run/netns/c1".into(),
        ifname: "eth0".into(),
        args: vec![("FOO".into(), "BAR".into())],
        capability_args,
    }
}

const RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/c1"}],
    "ips":[{"address":"10.1.2.3/24","gateway":"10.1.2.1","interface":0}],"dns":{"nameservers":["1.1.1.1"]}}"#;

/// A three-plugin chain: the first returns RESULT, the others pass it on; the second
/// wants port mappings.
fn chain(rt_: &Runtime, version: &str) -> NetConfList {
    let result: Value = serde_json::from_str(RESULT).expect("result");
    list(json!({
        "cniVersion": version,
        "name": "dbnet",
        "plugins": [
            {"type": "noop", "name": "p1", "debugFile": rt_.debug("p1", json!({"reportResult": result}))},
            {"type": "noop", "debugFile": rt_.debug("p2", json!({"reportResult": "PASSTHROUGH"})),
             "capabilities": {"portMappings": true, "ips": true}, "runtimeConfig": {"stale": 1}},
            {"type": "noop", "debugFile": rt_.debug("p3", json!({"reportResult": "PASSTHROUGH"})),
             "capabilities": {"bandwidth": false}, "runtimeConfig": {"kept": true}},
        ]
    }))
}

fn stdin_of(call: &Value) -> &serde_json::Map<String, Value> {
    call["stdin"].as_object().expect("stdin object")
}

#[test]
fn add_chains_prev_results_and_derives_each_stdin() {
    let r = Runtime::new();
    let net = chain(&r, "1.0.0");
    let rt = rt();
    let result = r.cni.add_network_list(&net, &rt).expect("ADD");
    let expected: Value = serde_json::from_str(RESULT).expect("result");
    assert_eq!(result.to_value(), expected, "final result is the chain's");

    let calls = r.calls();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        assert_eq!(call["command"], "ADD");
        assert_eq!(call["containerID"], "c1");
        assert_eq!(call["netns"], "/run/netns/c1");
        assert_eq!(call["ifname"], "eth0");
        assert_eq!(call["args"], "FOO=BAR");
        assert_eq!(call["path"], r.bin.path().display().to_string());
        let stdin = stdin_of(call);
        assert_eq!(stdin["name"], "dbnet", "list name injected");
        assert_eq!(stdin["cniVersion"], "1.0.0", "list version injected");
    }
    let (first, second, third) = (
        stdin_of(&calls[0]),
        stdin_of(&calls[1]),
        stdin_of(&calls[2]),
    );
    assert!(
        !first.contains_key("prevResult"),
        "no prevResult for the first plugin"
    );
    assert!(
        !first.contains_key("runtimeConfig"),
        "no capabilities, no runtimeConfig"
    );
    assert_eq!(second["prevResult"], expected);
    assert_eq!(
        second["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}),
        "only declared capabilities the runtime has values for; replaces the on-disk one"
    );
    assert_eq!(
        second["capabilities"],
        json!({"portMappings": true, "ips": true})
    );
    assert_eq!(third["prevResult"], expected);
    assert_eq!(
        third["runtimeConfig"],
        json!({"kept": true}),
        "on-disk runtimeConfig passes"
    );
}

#[test]
fn the_cache_file_has_upstreams_format() {
    let r = Runtime::new();
    let net = chain(&r, "1.0.0");
    let rt = rt();
    let result = r.cni.add_network_list(&net, &rt).expect("ADD");
    let text = std::fs::read_to_string(r.cache_file("dbnet", &rt)).expect("cache file");
    use base64::Engine;
    let expected = format!(
        r#"{{"kind":"cniCacheV1","containerId":"c1","config":"{}","ifName":"eth0","networkName":"dbnet","netns":"/run/netns/c1","cniArgs":[["FOO","BAR"]],"capabilityArgs":{},"result":{}}}"#,
        base64::engine::general_purpose::STANDARD.encode(&net.bytes),
        serde_json::to_string(&rt.capability_args).expect("json"),
        serde_json::to_string(&result.to_value()).expect("json"),
    );
    assert_eq!(text, expected);
    let (config, cached_rt) = r
        .cni
        .get_network_list_cached_config(
            &net,
            &RuntimeConf {
                args: vec![],
                capability_args: Default::default(),
                ..rt.clone()
            },
        )
        .expect("read")
        .expect("cached");
    assert_eq!(config, net.bytes);
    assert_eq!(
        cached_rt, rt,
        "args and capability args come from the cache"
    );
    let attachments = r.cni.get_cached_attachments(Some("c1"));
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        (
            attachments[0].network.as_str(),
            attachments[0].ifname.as_str()
        ),
        ("dbnet", "eth0")
    );
}

#[test]
fn a_hand_written_cache_file_is_read() {
    // Written from the documented format, as upstream's libcni leaves it: a 0.3.1
    // result, converted to the list's version for CHECK.
    let r = Runtime::new();
    let net = chain(&r, "1.0.0");
    let rt = rt();
    let path = r.cache_file("dbnet", &rt);
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    std::fs::write(
        &path,
        r#"{"kind":"cniCacheV1","containerId":"c1","config":"e30=","ifName":"eth0","networkName":"dbnet",
            "result":{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.9.0.5/16"}],"dns":{}}}"#,
    )
    .expect("write");
    r.cni.check_network_list(&net, &rt).expect("CHECK");
    for call in r.calls() {
        assert_eq!(
            stdin_of(&call)["prevResult"],
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.5/16"}]})
        );
    }
    // The legacy format (the bare result) is read too.
    std::fs::write(
        &path,
        r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.9.0.6/16"}],"dns":{}}"#,
    )
    .expect("write");
    let cached = r
        .cni
        .get_network_list_cached_result(&net, &rt)
        .expect("read")
        .expect("cached");
    assert_eq!(cached.to_value()["ips"][0]["address"], "10.9.0.6/16");
}

#[test]
fn check_and_del_get_the_cached_result_and_del_runs_in_reverse() {
    let r = Runtime::new();
    let net = chain(&r, "1.0.0");
    let rt = rt();
    let result = r.cni.add_network_list(&net, &rt).expect("ADD");
    r.cni.check_network_list(&net, &rt).expect("CHECK");
    r.cni.del_network_list(&net, &rt).expect("DEL");
    let ids = |cmd: &str| -> Vec<String> {
        r.sequence()
            .into_iter()
            .filter(|(c, _)| c == cmd)
            .map(|(_, id)| id)
            .collect()
    };
    assert_eq!(ids("CHECK"), ["p1", "p2", "p3"]);
    assert_eq!(ids("DEL"), ["p3", "p2", "p1"]);
    for call in r.calls().iter().filter(|c| c["command"] != "ADD") {
        assert_eq!(stdin_of(call)["prevResult"], result.to_value());
        assert_eq!(call["args"], "FOO=BAR");
    }
    assert!(
        !r.cache_file("dbnet", &rt).exists(),
        "DEL removes the cache file"
    );
    assert_eq!(r.cni.get_network_list_cached_result(&net, &rt), Ok(None));
    // DEL again: still fine, now without prevResult.
    r.cni.del_network_list(&net, &rt).expect("second DEL");
    let last = r.calls().pop().expect("a call");
    assert!(!stdin_of(&last).contains_key("prevResult"));
}

#[test]
fn check_gating_and_disable_check() {
    let r = Runtime::new();
    let old = chain(&r, "0.3.1");
    let rt = rt();
    r.cni.add_network_list(&old, &rt).expect("ADD at 0.3.1");
    let e = r
        .cni
        .check_network_list(&old, &rt)
        .expect_err("no CHECK before 0.4.0");
    assert_eq!(e, Error::CheckNotSupported("0.3.1".into()));
    assert_eq!(
        e.to_string(),
        r#"configuration version "0.3.1" does not support the CHECK command"#
    );
    // Below 0.4.0, DEL sends no prevResult, but still removes the cache.
    r.cni.del_network_list(&old, &rt).expect("DEL");
    for call in r.calls().iter().filter(|c| c["command"] == "DEL") {
        assert!(!stdin_of(call).contains_key("prevResult"));
    }
    assert!(!r.cache_file("dbnet", &rt).exists());

    let mut disabled = chain(&r, "1.0.0");
    disabled.disable_check = true;
    let before = r.calls().len();
    r.cni
        .check_network_list(&disabled, &rt)
        .expect("disabled CHECK is a no-op");
    assert_eq!(r.calls().len(), before, "no plugin ran");
}

#[test]
fn an_unusable_cache_fails_check_but_never_blocks_del() {
    let r = Runtime::new();
    let net = chain(&r, "1.0.0");
    let rt = rt();
    let path = r.cache_file("dbnet", &rt);
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    for (content, check_error) in [
        (
            "asdf",
            "failed to get network \"dbnet\" cached result: decoding version from network config: expected value at line 1 column 1",
        ),
        (
            r#"{"cniVersion":"0.4567.0","ips":[]}"#,
            "failed to get network \"dbnet\" cached result: unsupported CNI result version \"0.4567.0\"",
        ),
    ] {
        std::fs::write(&path, content).expect("write");
        let e = r
            .cni
            .check_network_list(&net, &rt)
            .expect_err("CHECK fails");
        assert_eq!(e.to_string(), check_error);
        r.cni.del_network_list(&net, &rt).expect("DEL goes on");
        assert!(!path.exists(), "the unusable file is gone");
    }
    // An empty file (a crash during upstream's write) counts as no cache at all.
    std::fs::write(&path, "").expect("write");
    r.cni
        .check_network_list(&net, &rt)
        .expect("CHECK without prevResult");
    r.cni.del_network_list(&net, &rt).expect("DEL");
}

#[test]
fn errors_stop_the_chain_with_upstreams_context() {
    let r = Runtime::new();
    let net = list(json!({
        "cniVersion": "1.0.0", "name": "dbnet",
        "plugins": [
            {"type": "noop", "debugFile": r.debug("p1", json!({"reportResult": serde_json::from_str::<Value>(RESULT).expect("json")}))},
            {"type": "noop", "name": "second", "debugFile": r.debug("p2", json!({"reportError": "banana", "reportErrorCode": 1234}))},
            {"type": "noop", "debugFile": r.debug("p3", json!({}))},
        ]
    }));
    let rt = rt();
    let e = r.cni.add_network_list(&net, &rt).expect_err("ADD fails");
    assert_eq!(
        e.to_string(),
        r#"plugin type="noop" name="second" failed (add): banana"#
    );
    assert_eq!(
        e.code(),
        Some(1234),
        "the plugin's code survives the context"
    );
    assert_eq!(r.sequence().len(), 2, "the third plugin never ran");
    assert!(
        !r.cache_file("dbnet", &rt).exists(),
        "a failed ADD caches nothing"
    );
    let e = r
        .cni
        .del_network_list(&net, &rt)
        .expect_err("DEL fails too");
    assert_eq!(
        e.to_string(),
        r#"plugin type="noop" name="second" failed (delete): banana"#
    );
    assert_eq!(
        r.sequence().last().map(|(c, id)| (c.as_str(), id.as_str())),
        Some(("DEL", "p2")),
        "DEL ran in reverse and stopped at the failing plugin"
    );
}

#[test]
fn add_validates_the_attachment_first() {
    let r = Runtime::new();
    let net = chain(&r, "1.0.0");
    let bad = |container_id: &str, ifname: &str| {
        let rt = RuntimeConf {
            container_id: container_id.into(),
            ifname: ifname.into(),
            ..rt()
        };
        let e = r.cni.add_network_list(&net, &rt).expect_err("invalid");
        (e.code(), e.to_string())
    };
    assert_eq!(
        bad("", "eth0"),
        (
            Some(3),
            r#"plugin type="noop" name="p1" failed (add): missing containerID"#.into()
        )
    );
    assert_eq!(
        bad("a/b", "eth0"),
        (
            Some(4),
            r#"plugin type="noop" name="p1" failed (add): invalid characters in containerID; a/b"#
                .into()
        )
    );
    for ifname in ["", "0123456789abcdef", ".", "..", "a/b", "a:b", "a b"] {
        assert_eq!(bad("c1", ifname).0, Some(4), "ifname {ifname:?}");
    }
    let unnamed =
        list(json!({"cniVersion": "1.0.0", "name": "bad name", "plugins": [{"type": "noop"}]}));
    let e = r
        .cni
        .add_network_list(&unnamed, &rt())
        .expect_err("bad network name");
    assert_eq!(e.code(), Some(7));
    assert!(r.calls().is_empty(), "nothing ran");
}

#[test]
fn missing_plugins_are_reported() {
    let r = Runtime::new();
    let net =
        list(json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "does-not-exist"}]}));
    let e = r
        .cni
        .add_network_list(&net, &rt())
        .expect_err("no such plugin");
    assert_eq!(
        e.to_string(),
        format!(
            r#"plugin type="does-not-exist" failed (add): failed to find plugin "does-not-exist" in path [{}]"#,
            r.bin.path().display()
        )
    );
}

#[test]
fn gc_deletes_stale_attachments_then_gcs_every_plugin() {
    let r = Runtime::new();
    let debug = r.debug(
        "p1",
        json!({"reportResult": serde_json::from_str::<Value>(RESULT).expect("json")}),
    );
    let net = list(
        json!({"cniVersion": "1.1.0", "name": "gcnet", "plugins": [{"type": "noop", "debugFile": debug}]}),
    );
    let rt = rt();
    r.cni.add_network_list(&net, &rt).expect("ADD");
    let valid = GcArgs {
        valid_attachments: vec![GcAttachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        }],
    };
    r.cni
        .gc_network_list(&net, Some(&valid))
        .expect("GC, attachment valid");
    assert!(
        r.cache_file("gcnet", &rt).exists(),
        "a valid attachment stays"
    );
    r.cni
        .gc_network_list(&net, Some(&GcArgs::default()))
        .expect("GC, nothing valid");
    assert!(
        !r.cache_file("gcnet", &rt).exists(),
        "the stale attachment was deleted"
    );
    let commands: Vec<String> = r.sequence().into_iter().map(|(c, _)| c).collect();
    assert_eq!(commands, ["ADD", "GC", "DEL", "GC"]);

    let calls = r.calls();
    let first_gc = stdin_of(&calls[1]);
    assert_eq!(
        first_gc["cni.dev/valid-attachments"],
        json!([{"containerID": "c1", "ifname": "eth0"}])
    );
    assert_eq!(
        first_gc["cni.dev/attachments"],
        first_gc["cni.dev/valid-attachments"]
    );
    assert_eq!(first_gc["name"], "gcnet");
    assert!(!first_gc.contains_key("prevResult"));
    for key in ["containerID", "netns", "ifname", "args"] {
        assert_eq!(calls[1][key], "", "GC has no attachment: {key}");
    }
    assert_eq!(
        calls[2]["netns"], "/run/netns/c1",
        "the stale DEL uses the cached netns"
    );
    assert_eq!(calls[2]["args"], "FOO=BAR", "and the cached CNI_ARGS");
    assert_eq!(
        stdin_of(&calls[2]).get("runtimeConfig"),
        None,
        "noop declares no capabilities"
    );
    assert_eq!(stdin_of(&calls[3])["cni.dev/valid-attachments"], json!([]));

    // Without arguments (cnitool gc) every attachment is stale, and plugins get no list.
    r.cni.add_network_list(&net, &rt).expect("ADD");
    r.cni.gc_network_list(&net, None).expect("GC all");
    assert!(!r.cache_file("gcnet", &rt).exists());
    let last = r.calls().pop().expect("a call");
    assert_eq!(last["command"], "GC");
    assert!(!stdin_of(&last).contains_key("cni.dev/valid-attachments"));

    // disableGC: nothing runs.
    let mut disabled = net.clone();
    disabled.disable_gc = true;
    r.cni.add_network_list(&disabled, &rt).expect("ADD");
    let before = r.calls().len();
    r.cni.gc_network_list(&disabled, None).expect("disabled GC");
    assert_eq!(r.calls().len(), before);
    assert!(r.cache_file("gcnet", &rt).exists());
}

#[test]
fn gc_goes_on_after_errors_and_reports_them_all() {
    let r = Runtime::new();
    let failing = r.debug(
        "p1",
        json!({"reportError": "no way", "reportErrorCode": 11}),
    );
    let net = list(json!({"cniVersion": "1.1.0", "name": "gcnet", "plugins": [
        {"type": "noop", "debugFile": failing},
        {"type": "noop", "debugFile": r.debug("p2", json!({}))},
    ]}));
    let rt = rt();
    // A cached attachment made by hand, as if an earlier ADD had succeeded.
    r.cni
        .cache()
        .write("gcnet", &net.bytes, &rt, None)
        .expect("cache");
    let e = r.cni.gc_network_list(&net, None).expect_err("errors");
    assert_eq!(
        e.to_string(),
        "failed to delete stale attachment c1 eth0: plugin type=\"noop\" failed (delete): no way\n\
         failed to GC plugin noop: no way"
    );
    let gcs: Vec<String> = r
        .sequence()
        .into_iter()
        .filter(|(c, _)| c == "GC")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        gcs,
        ["p1", "p2"],
        "the second plugin's GC ran after the first failed"
    );
}

#[test]
fn status_stops_at_the_first_error_and_keeps_its_code() {
    let r = Runtime::new();
    let net = list(json!({"cniVersion": "1.1.0", "name": "st", "plugins": [
        {"type": "noop", "debugFile": r.debug("p1", json!({}))},
        {"type": "noop", "debugFile": r.debug("p2", json!({"reportError": "pool exhausted", "reportErrorCode": 50}))},
        {"type": "noop", "debugFile": r.debug("p3", json!({}))},
    ]}));
    let e = r.cni.get_status_network_list(&net).expect_err("not ready");
    assert_eq!(e.code(), Some(50));
    assert_eq!(e.to_string(), "pool exhausted");
    assert_eq!(
        r.sequence(),
        [
            ("STATUS".to_string(), "p1".to_string()),
            ("STATUS".into(), "p2".into())
        ]
    );
    let call = &r.calls()[0];
    assert_eq!(stdin_of(call)["name"], "st");
    assert_eq!(call["containerID"], "");

    let mut old = net.clone();
    old.cni_version = "1.0.0".into();
    r.cni
        .get_status_network_list(&old)
        .expect("before 1.1.0 STATUS is a no-op");
    assert_eq!(r.calls().len(), 2);
}

#[test]
fn a_plugin_that_hangs_is_ended() {
    let r = Runtime::new();
    let cni = r.cni.clone().with_timeout(Duration::from_millis(500));
    let net = list(json!({"cniVersion": "1.0.0", "name": "slow", "plugins": [{"type": "sleep"}]}));
    let started = Instant::now();
    let e = cni.add_network_list(&net, &rt()).expect_err("times out");
    assert!(
        e.to_string()
            .contains("netplugin failed with no error message: signal: terminated"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(cni.del_network_list(&net, &rt()).is_err());
    assert!(cni.get_version_info("sleep").is_err());
}

#[test]
fn a_plugin_that_ignores_sigterm_gets_sigkill() {
    let r = Runtime::new();
    // Ignored signals stay ignored across exec, so the script's children ignore it too.
    script(
        r.bin.path(),
        "stubborn",
        "trap '' TERM\nwhile :; do sleep 0.1; done",
    );
    let cni = r.cni.clone().with_timeout(Duration::from_millis(300));
    let net =
        list(json!({"cniVersion": "1.0.0", "name": "slow", "plugins": [{"type": "stubborn"}]}));
    let started = Instant::now();
    let e = cni.add_network_list(&net, &rt()).expect_err("killed");
    let elapsed = started.elapsed();
    assert!(
        e.to_string()
            .ends_with("netplugin failed with no error message: signal: killed"),
        "{e}"
    );
    assert!(
        elapsed >= libcni_grace(),
        "SIGKILL only after the grace period: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

fn libcni_grace() -> Duration {
    cni_skel::invoke::TERMINATE_GRACE
}

/// A plugin written as a shell script.
fn script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn version_probing_handles_old_plugins() {
    let r = Runtime::new();
    let dir = r.bin.path();
    // Before VERSION existed, plugins rejected the command.
    script(
        dir,
        "ancient",
        r#"echo '{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}'; exit 1"#,
    );
    // The first VERSION replies had no supportedVersions.
    script(dir, "early", r#"echo '{"cniVersion":"0.2.0"}'"#);
    // Old plugins insisted on these variables even for VERSION.
    script(
        dir,
        "picky",
        r#"[ "$CNI_NETNS" = dummy ] && [ "$CNI_IFNAME" = dummy ] && [ "$CNI_PATH" = dummy ] || exit 3
           read -r conf; [ "$conf" = '{"cniVersion":"1.1.0"}' ] || exit 4
           echo '{"cniVersion":"0.4.0","supportedVersions":["0.2.0","0.4.0","0.999.0"]}'"#,
    );
    script(dir, "broken", "echo garbage");
    let versions = |t: &str| r.cni.get_version_info(t).map(|i| i.supported_versions);
    assert_eq!(versions("ancient"), Ok(vec!["0.1.0".to_string()]));
    assert_eq!(
        versions("early"),
        Ok(vec!["0.1.0".to_string(), "0.2.0".to_string()])
    );
    assert_eq!(
        versions("picky"),
        Ok(vec![
            "0.2.0".to_string(),
            "0.4.0".to_string(),
            "0.999.0".to_string()
        ])
    );
    assert!(
        versions("broken")
            .expect_err("garbage")
            .to_string()
            .starts_with("decoding version info: ")
    );
    assert_eq!(
        versions("noop").expect("noop").len(),
        cni_types::version::ALL.len()
    );
}

#[test]
fn validate_reports_every_problem_and_the_capabilities() {
    let r = Runtime::new();
    script(r.bin.path(), "old", r#"echo '{"cniVersion":"0.2.0"}'"#);
    let net = list(json!({"cniVersion": "1.0.0", "name": "v", "plugins": [
        {"type": "noop", "capabilities": {"portMappings": true, "mac": false}},
        {"type": "nope"},
        {"type": "old"},
        {"type": "noop", "capabilities": {"portMappings": true, "bandwidth": true}},
    ]}));
    let e = r.cni.validate_network_list(&net).expect_err("invalid");
    assert_eq!(
        e.to_string(),
        format!(
            r#"[failed to find plugin "nope" in path [{}] plugin old does not support config version "1.0.0"]"#,
            r.bin.path().display()
        )
    );
    let good = list(json!({"cniVersion": "1.0.0", "name": "v", "plugins": [
        {"type": "noop", "capabilities": {"portMappings": true, "mac": false}},
        {"type": "noop", "capabilities": {"portMappings": true, "bandwidth": true}},
    ]}));
    let mut capabilities = r.cni.validate_network_list(&good).expect("valid");
    capabilities.sort();
    assert_eq!(capabilities, ["bandwidth", "portMappings"]);
}

#[test]
fn single_plugin_operations_use_the_plugins_own_name_and_version() {
    let r = Runtime::new();
    let debug = r.debug(
        "p1",
        json!({"reportResult": serde_json::from_str::<Value>(RESULT).expect("json")}),
    );
    let conf = cni_types::config::PluginConf::from_slice(
        json!({"cniVersion": "1.0.0", "name": "single", "type": "noop", "debugFile": debug})
            .to_string()
            .as_bytes(),
    )
    .expect("conf");
    let rt = rt();
    let result = r.cni.add_network(&conf, &rt).expect("ADD");
    assert!(r.cache_file("single", &rt).exists());
    r.cni.check_network(&conf, &rt).expect("CHECK");
    r.cni.del_network(&conf, &rt).expect("DEL");
    assert!(!r.cache_file("single", &rt).exists());
    let calls = r.calls();
    assert_eq!(stdin_of(&calls[1])["prevResult"], result.to_value());
    let e = r.cni.validate_network(&conf).expect("valid");
    assert!(e.is_empty());
}

#[test]
fn works_from_a_tokio_runtime() {
    let r = Runtime::new();
    let net = chain(&r, "1.0.0");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio");
    let cni = r.cni.clone();
    let results = runtime.block_on(async move {
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (cni, net) = (cni.clone(), net.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                let rt = RuntimeConf {
                    container_id: format!("c{i}"),
                    ..rt()
                };
                cni.add_network_list(&net, &rt)?;
                cni.del_network_list(&net, &rt)
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("join"));
        }
        results
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(r.calls().len(), 4 * 6);
}

#[test]
fn plugins_get_the_callers_environment_too() {
    let r = Runtime::new();
    script(
        r.bin.path(),
        "envdump",
        r#"printf '{"cniVersion":"1.0.0","dns":{"domain":"%s","search":["%s"]}}' "$PATH" "$CNI_COMMAND""#,
    );
    let net = list(json!({"cniVersion": "1.0.0", "name": "env", "plugins": [{"type": "envdump"}]}));
    let result = r.cni.add_network_list(&net, &rt()).expect("ADD").to_value();
    assert_eq!(
        result["dns"]["domain"],
        std::env::var("PATH").unwrap_or_default()
    );
    assert_eq!(result["dns"]["search"], json!(["ADD"]));
}
