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

/// One plugin call in a sandbox, from the sandbox's host netns, with `CNI_PATH` set
/// to `path` (our plugins when empty).
pub struct Runner<'a> {
    pub sandbox: &'a cni_testkit::Sandbox,
    pub path: String,
}

impl<'a> Runner<'a> {
    pub fn new(sandbox: &'a cni_testkit::Sandbox) -> Self {
        Runner {
            sandbox,
            path: plugin_dir().display().to_string(),
        }
    }

    /// Runs `binary` for `command` on the sandbox's container netns.
    pub fn call(
        &self,
        binary: &Path,
        command: &str,
        container_id: &str,
        ifname: &str,
        args: &str,
        conf: &str,
    ) -> cni_testkit::PluginOutput {
        let netns = self.sandbox.container_path();
        let call = cni_testkit::Call {
            command,
            container_id,
            netns: &netns,
            ifname,
            args,
            path: &self.path,
            ..Default::default()
        };
        self.sandbox.run_plugin(binary, &call, conf)
    }

    /// ADD that must succeed; returns the result JSON.
    pub fn add(
        &self,
        binary: &Path,
        container_id: &str,
        ifname: &str,
        conf: &str,
    ) -> serde_json::Value {
        let out = self.call(binary, "ADD", container_id, ifname, "", conf);
        assert_eq!(out.code, 0, "ADD failed: {} {}", out.stdout, out.stderr);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("result {}: {e}", out.stdout))
    }

    /// A verb that must succeed with no output (DEL, CHECK, GC, STATUS).
    pub fn ok(&self, binary: &Path, command: &str, container_id: &str, ifname: &str, conf: &str) {
        let out = self.call(binary, command, container_id, ifname, "", conf);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, ""),
            "{command} failed: {} {}",
            out.stdout,
            out.stderr
        );
    }

    /// A verb that must fail; returns (code, msg).
    pub fn fails(
        &self,
        binary: &Path,
        command: &str,
        container_id: &str,
        ifname: &str,
        args: &str,
        conf: &str,
    ) -> (u64, String) {
        let out = self.call(binary, command, container_id, ifname, args, conf);
        assert_eq!(
            out.code, 1,
            "{command} should fail: {} {}",
            out.stdout, out.stderr
        );
        let (code, msg, _) = error_of(&out.stdout);
        (code, msg)
    }
}

/// `ip -j` output of a command in a sandbox namespace.
pub fn ip_json(sandbox: &cni_testkit::Sandbox, netns: &str, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    serde_json::from_str(&sandbox.ip(netns, &full)).expect("ip -j output")
}

/// The `local/prefixlen` addresses of `dev` in `netns`, global scope only.
pub fn addresses(sandbox: &cni_testkit::Sandbox, netns: &str, dev: &str) -> Vec<String> {
    let json = ip_json(sandbox, netns, &["addr", "show", "dev", dev]);
    json[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
        .collect()
}

/// Link names in a namespace.
pub fn links(sandbox: &cni_testkit::Sandbox, netns: &str) -> Vec<String> {
    ip_json(sandbox, netns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// Runs a command in the sandbox's host netns and returns stdout ("" if it failed).
pub fn host_cmd(sandbox: &cni_testkit::Sandbox, program: &str, args: &[&str]) -> String {
    let out = sandbox.run_in_host(Path::new(program), args, &[]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The nat table as `iptables -S` shows it in the sandbox host.
pub fn iptables_nat(sandbox: &cni_testkit::Sandbox, v6: bool) -> String {
    let bin = if v6 {
        "/usr/sbin/ip6tables"
    } else {
        "/usr/sbin/iptables"
    };
    host_cmd(sandbox, bin, &["-t", "nat", "-S"])
}

/// `nft list ruleset` in the sandbox host.
pub fn nft_ruleset(sandbox: &cni_testkit::Sandbox) -> String {
    host_cmd(sandbox, "/usr/sbin/nft", &["list", "ruleset"])
}

/// The reservation files of a host-local network (address files only).
pub fn reservations(dir: &Path) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.parse::<std::net::IpAddr>().ok()?;
                    Some((name, std::fs::read_to_string(e.path()).unwrap_or_default()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}
