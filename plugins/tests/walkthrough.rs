//! The README's first command, `scripts/walkthrough.sh`, on a machine without the
//! iptables and nft tools: the masquerade is written in-process with nftables, and
//! is there after ADD and gone after DEL.

mod common;

use std::path::Path;
use std::process::Command;

use cni_testkit::{require_root, workspace_binary};

/// A directory of symlinks to every program of the usual PATH, firewall tools aside.
fn path_without_firewall_tools() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    let hidden = |name: &str| {
        [
            "iptables",
            "ip6tables",
            "nft",
            "xtables",
            "ebtables",
            "arptables",
        ]
        .iter()
        .any(|tool| name.starts_with(tool))
    };
    for source in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        for entry in std::fs::read_dir(source).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let target = dir.path().join(&name);
            if !hidden(&name.to_string_lossy()) && !target.exists() {
                let _ = std::os::unix::fs::symlink(entry.path(), &target);
            }
        }
    }
    dir
}

#[test]
fn the_walkthrough_needs_neither_iptables_nor_nft() {
    require_root!();
    let bin = workspace_binary("rcni");
    let bin_dir = bin.parent().expect("target dir");
    assert!(workspace_binary("cnitool").is_file());
    let path = path_without_firewall_tools();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/walkthrough.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env_clear()
        .env("PATH", path.path())
        .env("RCNI_BIN", bin_dir)
        .output()
        .expect("run the walkthrough");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("firewall backend: nftables, in-process"),
        "{stdout}"
    );
    let (during, after) = stdout
        .split_once("== masquerade rules after DEL")
        .expect("both listings");
    let rules = during
        .split_once("== masquerade rules (rcni firewall):")
        .map(|(_, r)| r)
        .expect("the listing after ADD");
    assert!(
        rules.contains("inet cni_plugins_masquerade masq_checks")
            && rules.contains("net: mynet, if: eth0"),
        "{stdout}"
    );
    assert!(
        after.contains("masq_checks") && !after.contains("net: mynet"),
        "{stdout}"
    );
}
