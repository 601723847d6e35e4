//! The plugin protocol, checked by running the real `loopback` (the multicall binary
//! under that name) with the environment and stdin a runtime would give it: every
//! environment and validation error, version negotiation and gating, VERSION and the
//! about text. None of these cases reaches the kernel.

mod common;

use cni_testkit::{Call, PluginOutput, run_binary};
use common::{error_of, plugin};

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"mynet","type":"loopback"}"#;

fn run(call: &Call, stdin: &str) -> PluginOutput {
    run_binary(&plugin("loopback"), &call.env(), stdin)
}

/// A call with every variable set; the netns does not exist, so a verb that gets past
/// validation fails later in a recognisable way.
fn full(command: &'static str) -> Call<'static> {
    Call {
        command,
        container_id: "c1",
        netns: "/run/netns/rcni-does-not-exist",
        ifname: "eth0",
        path: "/opt/cni/bin",
        ..Default::default()
    }
}

fn expect_error(out: &PluginOutput, code: u64, msg: &str) {
    assert_eq!(
        out.code, 1,
        "exit status; stdout {:?} stderr {:?}",
        out.stdout, out.stderr
    );
    let (got_code, got_msg, _) = error_of(&out.stdout);
    assert_eq!(
        (got_code, got_msg.as_str()),
        (code, msg),
        "stdout {:?}",
        out.stdout
    );
    assert!(
        !out.stdout.ends_with('\n'),
        "upstream prints errors without a trailing newline"
    );
}

#[test]
fn no_command_prints_the_about_text_on_stderr() {
    let out = run(&Call::default(), "");
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        format!(
            "CNI loopback plugin rcni v{}\nCNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn version_needs_no_stdin_and_lists_what_upstream_lists() {
    let out = run(
        &Call {
            command: "VERSION",
            ..Default::default()
        },
        "this is not read",
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.1.0\",\"0.2.0\",\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}\n"
    );
}

#[test]
fn each_required_variable_is_reported_missing_per_verb() {
    // (verb, variables left out, the message upstream gives)
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "ADD",
            &["CNI_CONTAINERID"],
            "required env variables [CNI_CONTAINERID] missing",
        ),
        (
            "ADD",
            &["CNI_NETNS"],
            "required env variables [CNI_NETNS] missing",
        ),
        (
            "ADD",
            &["CNI_IFNAME"],
            "required env variables [CNI_IFNAME] missing",
        ),
        (
            "ADD",
            &["CNI_PATH"],
            "required env variables [CNI_PATH] missing",
        ),
        (
            "ADD",
            &["CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
            "required env variables [CNI_NETNS,CNI_IFNAME,CNI_PATH] missing",
        ),
        (
            "CHECK",
            &["CNI_CONTAINERID"],
            "required env variables [CNI_CONTAINERID] missing",
        ),
        (
            "CHECK",
            &["CNI_NETNS"],
            "required env variables [CNI_NETNS] missing",
        ),
        (
            "CHECK",
            &["CNI_IFNAME"],
            "required env variables [CNI_IFNAME] missing",
        ),
        (
            "CHECK",
            &["CNI_PATH"],
            "required env variables [CNI_PATH] missing",
        ),
        (
            "DEL",
            &["CNI_CONTAINERID"],
            "required env variables [CNI_CONTAINERID] missing",
        ),
        (
            "DEL",
            &["CNI_IFNAME"],
            "required env variables [CNI_IFNAME] missing",
        ),
        (
            "DEL",
            &["CNI_PATH"],
            "required env variables [CNI_PATH] missing",
        ),
        (
            "GC",
            &["CNI_PATH"],
            "required env variables [CNI_PATH] missing",
        ),
        (
            "STATUS",
            &["CNI_PATH"],
            "required env variables [CNI_PATH] missing",
        ),
    ];
    for (verb, left_out, msg) in cases {
        let mut env = full(verb).env();
        env.retain(|(k, _)| !left_out.contains(k));
        let out = run_binary(&plugin("loopback"), &env, CONF);
        expect_error(&out, 4, msg);
    }
}

#[test]
fn optional_variables_may_be_missing() {
    // DEL without CNI_NETNS is fine (the netns may be gone); CNI_ARGS is never required;
    // GC and STATUS need no attachment at all.
    let del = Call {
        netns: "",
        ..full("DEL")
    };
    assert_eq!(run(&del, CONF).code, 0, "DEL without netns");
    let conf11 = r#"{"cniVersion":"1.1.0","name":"mynet","type":"loopback"}"#;
    for verb in ["GC", "STATUS"] {
        let out = run(
            &Call {
                command: verb,
                path: "/opt/cni/bin",
                ..Default::default()
            },
            conf11,
        );
        assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{verb}: {out:?}");
    }
}

#[test]
fn unknown_command() {
    expect_error(&run(&full("FOO"), CONF), 4, "unknown CNI_COMMAND: FOO");
    expect_error(&run(&full("add"), CONF), 4, "unknown CNI_COMMAND: add");
}

#[test]
fn bad_json_is_a_decoding_failure() {
    for stdin in ["", "{", "not json", "[1,2]", r#"{"name": 5}"#] {
        let out = run(&full("ADD"), stdin);
        assert_eq!(out.code, 1);
        let (code, msg, _) = error_of(&out.stdout);
        assert_eq!(code, 6, "{stdin:?}");
        assert!(
            msg.starts_with("error unmarshall network config: "),
            "{msg}"
        );
    }
}

#[test]
fn network_name_is_required_and_validated() {
    expect_error(
        &run(&full("ADD"), r#"{"cniVersion":"1.0.0","type":"loopback"}"#),
        7,
        "missing network name",
    );
    expect_error(
        &run(&full("DEL"), r#"{"cniVersion":"1.0.0","name":""}"#),
        7,
        "missing network name",
    );
    let out = run(&full("ADD"), r#"{"cniVersion":"1.0.0","name":"my net"}"#);
    expect_error(&out, 7, "invalid characters found in network name");
    assert_eq!(error_of(&out.stdout).2, "my net");
}

#[test]
fn container_id_and_interface_name_are_validated() {
    let out = run(
        &Call {
            container_id: "-bad",
            ..full("ADD")
        },
        CONF,
    );
    expect_error(&out, 4, "invalid characters in containerID");
    assert_eq!(error_of(&out.stdout).2, "-bad");
    for (ifname, msg) in [
        ("a234567890123456", "interface name is too long"),
        (".", "interface name is . or .."),
        ("..", "interface name is . or .."),
        (
            "a/b",
            "interface name contains / or : or whitespace characters",
        ),
        (
            "a:b",
            "interface name contains / or : or whitespace characters",
        ),
        (
            "a b",
            "interface name contains / or : or whitespace characters",
        ),
    ] {
        for verb in ["ADD", "CHECK", "DEL"] {
            expect_error(
                &run(
                    &Call {
                        ifname,
                        ..full(verb)
                    },
                    CONF,
                ),
                4,
                msg,
            );
        }
    }
}

#[test]
fn unsupported_versions_are_refused_with_the_supported_list() {
    for version in ["9.9.9", "1.0", "2.0.0"] {
        let stdin = format!(r#"{{"cniVersion":"{version}","name":"mynet"}}"#);
        let out = run(&full("ADD"), &stdin);
        expect_error(&out, 1, "incompatible CNI versions");
        assert_eq!(
            error_of(&out.stdout).2,
            format!(
                r#"config is "{version}", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#
            )
        );
    }
    // A version that is not even a version cannot be decoded.
    let out = run(&full("CHECK"), r#"{"cniVersion":"a.b.c","name":"mynet"}"#);
    assert_eq!(error_of(&out.stdout).0, 6, "{out:?}");
}

#[test]
fn a_missing_cni_version_means_0_1_0() {
    // Gets past negotiation (0.1.0 is supported) and fails on the missing netns.
    let out = run(&full("ADD"), r#"{"name":"mynet","type":"loopback"}"#);
    let (code, msg, _) = error_of(&out.stdout);
    assert_eq!(code, 999, "{msg}");
    assert!(msg.contains("rcni-does-not-exist"), "{msg}");
}

#[test]
fn check_gc_and_status_are_gated_by_version() {
    let conf = |v: &str| format!(r#"{{"cniVersion":"{v}","name":"mynet"}}"#);
    expect_error(
        &run(&full("CHECK"), &conf("0.3.1")),
        1,
        "config version does not allow CHECK",
    );
    expect_error(
        &run(&full("CHECK"), &conf("")),
        1,
        "config version does not allow CHECK",
    );
    expect_error(
        &run(&full("CHECK"), &conf("9.0.0")),
        1,
        "plugin version does not allow CHECK",
    );
    for verb in ["GC", "STATUS"] {
        expect_error(
            &run(&full(verb), &conf("1.0.0")),
            1,
            &format!("config version does not allow {verb}"),
        );
        expect_error(
            &run(&full(verb), &conf("1.2.0")),
            1,
            &format!("plugin version does not allow {verb}"),
        );
        let ok = run(&full(verb), &conf("1.1.0"));
        assert_eq!(
            (ok.code, ok.stdout.as_str()),
            (0, ""),
            "{verb} at 1.1.0 is a silent success for loopback"
        );
    }
}

#[test]
fn plugin_errors_are_code_999() {
    let out = run(&full("CHECK"), CONF);
    let (code, msg, _) = error_of(&out.stdout);
    assert_eq!(code, 999);
    assert_eq!(
        msg,
        "failed to Statfs \"/run/netns/rcni-does-not-exist\": no such file or directory"
    );
    // A path that is not a network namespace.
    let out = run(
        &Call {
            netns: "/etc/passwd",
            ..full("ADD")
        },
        CONF,
    );
    let (code, msg, _) = error_of(&out.stdout);
    assert_eq!(code, 999);
    assert!(msg.starts_with("unknown FS magic"), "{msg}");
}

#[test]
fn rcni_lists_and_installs_its_plugins() {
    use std::os::unix::fs::MetadataExt;
    let out = run_binary(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")), &[], "");
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("  loopback\n"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("cni-test"),
        "test plugins are not part of the binary"
    );
    // Installed as a hard link to the binary: same inode.
    let installed = std::fs::metadata(plugin("loopback")).expect("installed");
    let installed_names = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(common::plugin_dir())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let plugins = [
        "bandwidth",
        "bridge",
        "dummy",
        "firewall",
        "host-device",
        "host-local",
        "ipvlan",
        "loopback",
        "macvlan",
        "portmap",
        "ptp",
        "sbr",
        "static",
        "tap",
        "tuning",
        "vlan",
        "vrf",
    ];
    assert_eq!(installed_names(), plugins, "only plugins are installed");
    // Installing again replaces the links in place.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_rcni"))
        .args(["install", &common::plugin_dir().display().to_string()])
        .output()
        .expect("reinstall");
    assert!(again.status.success());
    let reinstalled = std::fs::metadata(plugin("loopback")).expect("installed");
    assert_eq!(installed.ino(), reinstalled.ino());
    assert_eq!(
        installed_names(),
        plugins,
        "no temporary link left by a reinstall"
    );
    assert!(installed.nlink() >= 2, "a hard link, not a copy");
}
