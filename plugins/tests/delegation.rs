//! Delegation (spec "Delegated plugins"): a plugin runs `ipam.type` from `CNI_PATH` with
//! the same stdin and environment, only `CNI_COMMAND` changed, and passes on its result
//! or its error with the code. Exercised through `cni_skel::invoke` with the noop test
//! double as the delegate.

use std::path::{Path, PathBuf};

use cni_skel::invoke::{delegate_add, delegate_verb, exec};
use cni_skel::{CmdArgs, Command};
use serde_json::{Value, json};

/// A CNI_PATH directory holding the noop double as `name`, plus its instructions file.
struct Delegate {
    dir: tempfile::TempDir,
    debug: PathBuf,
}

impl Delegate {
    fn new(name: &str, instructions: Value) -> Delegate {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(env!("CARGO_BIN_EXE_cni-test-noop"), dir.path().join(name))
            .expect("copy noop");
        let debug = dir.path().join("debug.json");
        std::fs::write(&debug, instructions.to_string()).expect("instructions");
        Delegate { dir, debug }
    }

    fn args(&self, stdin: &Value) -> CmdArgs {
        CmdArgs {
            container_id: "c1".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: format!("DEBUG={}", self.debug.display()),
            path: format!("/nonexistent:{}", self.dir.path().display()),
            stdin: serde_json::to_vec(stdin).expect("json"),
            cni_version: stdin["cniVersion"].as_str().unwrap_or("0.1.0").into(),
            ..Default::default()
        }
    }

    /// The calls the delegate recorded.
    fn log(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(format!("{}.log", self.debug.display())).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("log line"))
            .collect()
    }
}

fn conf() -> Value {
    json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge", "ipam": {"type": "fake-ipam", "subnet": "10.1.0.0/16"}})
}

#[test]
fn add_returns_the_delegate_result_and_passes_the_same_input() {
    let d = Delegate::new(
        "fake-ipam",
        json!({"reportResult": {"ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}]}}),
    );
    let args = d.args(&conf());
    // These reach the delegate; the caller's environment (here: the test's) is inherited.
    let result = delegate_add("fake-ipam", &args).expect("delegated ADD");
    // A result without cniVersion is read in the request's version.
    assert_eq!(result.version(), "1.0.0");
    assert!(result.to_json_pretty().contains("10.1.0.5/16"));
    let log = d.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["command"], "ADD");
    assert_eq!(
        log[0]["stdin"],
        conf(),
        "the whole config, not only the ipam part"
    );

    delegate_verb("fake-ipam", Command::Del, &args).expect("delegated DEL");
    delegate_verb("fake-ipam", Command::Check, &args).expect("delegated CHECK");
    let commands: Vec<Value> = d.log().iter().map(|r| r["command"].clone()).collect();
    assert_eq!(commands, ["ADD", "DEL", "CHECK"]);
}

#[test]
fn the_delegate_error_keeps_its_code() {
    let d = Delegate::new(
        "fake-ipam",
        json!({"reportError": "no addresses left", "reportErrorCode": 50}),
    );
    let err = delegate_add("fake-ipam", &d.args(&conf())).expect_err("fails");
    assert_eq!((err.code, err.msg.as_str()), (50, "no addresses left"));
}

#[test]
fn failures_without_an_error_message_are_described_as_upstream() {
    let d = Delegate::new("fake-ipam", json!({"exitWithCode": 3}));
    let err = delegate_add("fake-ipam", &d.args(&conf())).expect_err("fails");
    assert_eq!(
        (err.code, err.msg.as_str()),
        (0, "netplugin failed with no error message: exit status 3")
    );

    let d = Delegate::new(
        "fake-ipam",
        json!({"exitWithCode": 1, "reportStderr": "it broke"}),
    );
    let err = delegate_add("fake-ipam", &d.args(&conf())).expect_err("fails");
    assert_eq!(err.msg, "netplugin failed: \"it broke\"");
}

#[test]
fn a_missing_delegate_is_an_error() {
    let d = Delegate::new("fake-ipam", json!({}));
    let err = delegate_add("other-ipam", &d.args(&conf())).expect_err("not found");
    assert_eq!(err.code, 999);
    assert!(
        err.msg
            .starts_with("failed to find plugin \"other-ipam\" in path [/nonexistent "),
        "{}",
        err.msg
    );
}

#[test]
fn text_file_busy_is_retried_until_the_binary_is_complete() {
    // While a file is open for writing the kernel refuses to execute it (ETXTBSY), as
    // when a plugin is being installed. The exec must retry with a fresh process.
    let dir = tempfile::tempdir().expect("tempdir");
    let binary: &Path = &dir.path().join("busy");
    std::fs::copy(env!("CARGO_BIN_EXE_cni-test-noop"), binary).expect("copy");
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(binary)
        .expect("open for writing");
    let closer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        drop(writer);
    });
    let started = std::time::Instant::now();
    let stdout = exec(binary, &[("CNI_COMMAND", "VERSION")], b"")
        .expect("exec succeeds after the writer closes");
    closer.join().expect("closer");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1000),
        "it really waited"
    );
    assert!(String::from_utf8_lossy(&stdout).contains("supportedVersions"));
}
