//! Shared by the integration tests: the installed plugin directory and helpers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A directory where `rcni install` put the plugins (done once per test binary). It
/// lives in the target directory and is reused by every run, so tests leave nothing in
/// /tmp; `rcni install` replaces each link atomically.
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins");
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_rcni"))
            .arg("install")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run rcni install");
        assert!(status.success(), "rcni install failed");
        dir
    })
}

pub fn plugin(name: &str) -> PathBuf {
    plugin_dir().join(name)
}

/// The error JSON a failed plugin printed: (code, msg, details).
pub fn error_of(stdout: &str) -> (u64, String, String) {
    let v: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("error JSON {stdout:?}: {e}"));
    let text = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    (
        v["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code in {stdout}")),
        text("msg"),
        text("details"),
    )
}

/// Go's loopback from Debian's containernetworking-plugins, when installed.
pub const GO_PLUGINS: &str = "/usr/lib/cni";

pub fn go_plugin(name: &str) -> Option<PathBuf> {
    let path = Path::new(GO_PLUGINS).join(name);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "skipped part: {} not installed (Debian package containernetworking-plugins)",
            path.display()
        );
        None
    }
}
