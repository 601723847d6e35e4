//! Shared by the integration tests: the installed plugin directory and helpers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[allow(unused_imports)]
pub use cni_testkit::query::{
    addresses, error_of, host_cmd, ip_json, iptables_nat, iptables_table, links, nft_ruleset,
    reservations,
};

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

/// Runs the conformance lifecycle of `plugin` with `conf` against the real kernel in
/// a fresh sandbox (`conf_for` gets the sandbox, for state directories).
pub fn conformance_on_kernel(
    plugin_name: &str,
    versions: &[&'static str],
    conf_for: impl Fn(&cni_testkit::Sandbox) -> serde_json::Value,
) {
    chained_conformance_on_kernel(plugin_name, versions, |s| (None, conf_for(s)));
}

/// The lifecycle of a chained plugin on the kernel: `conf_for` gives the main
/// plugin's configuration (run first, as in a config list) and the plugin's.
pub fn chained_conformance_on_kernel(
    plugin_name: &str,
    versions: &[&'static str],
    conf_for: impl Fn(&cni_testkit::Sandbox) -> (Option<serde_json::Value>, serde_json::Value),
) {
    let sandbox = cni_testkit::Sandbox::new();
    let binary = plugin(plugin_name);
    let target = cni_testkit::conformance::SandboxTarget {
        sandbox: &sandbox,
        binary: &binary,
        path: plugin_dir().display().to_string(),
    };
    let (main, conf) = conf_for(&sandbox);
    cni_testkit::conformance::Lifecycle {
        conf,
        versions: versions.to_vec(),
        ifname: "eth0",
        // host-device's stand-in NIC is a veth: it dies with the namespace
        // (plugins/tests/host_device.rs covers that DEL on its own).
        device_dies_with_netns: plugin_name == "host-device",
        main,
    }
    .run(&target);
}

/// The same lifecycle against the fake kernel, in-process.
pub fn conformance_on_fake(
    plugin_name: &str,
    versions: &[&'static str],
    conf_for: impl Fn(&Path) -> serde_json::Value,
) {
    conformance_on_fake_with(plugin_name, versions, |_| {}, conf_for);
}

/// [`conformance_on_fake`] after `prepare` has set up the fake kernel (a master
/// link in its host namespace, say).
pub fn conformance_on_fake_with(
    plugin_name: &str,
    versions: &[&'static str],
    prepare: impl Fn(&cni_net::FakeKernel),
    conf_for: impl Fn(&Path) -> serde_json::Value,
) {
    chained_conformance_on_fake(plugin_name, versions, prepare, |dir| (None, conf_for(dir)));
}

/// The lifecycle of a chained plugin on the fake kernel (see
/// [`chained_conformance_on_kernel`]).
pub fn chained_conformance_on_fake(
    plugin_name: &str,
    versions: &[&'static str],
    prepare: impl Fn(&cni_net::FakeKernel),
    conf_for: impl Fn(&Path) -> (Option<serde_json::Value>, serde_json::Value),
) {
    let plugin = rcni::plugin(plugin_name).expect("plugin in rcni");
    let target = cni_testkit::conformance::FakeTarget::new(plugin, rcni::plugin);
    prepare(&target.fake);
    let (main, conf) = conf_for(target.state_dir());
    cni_testkit::conformance::Lifecycle {
        conf,
        versions: versions.to_vec(),
        ifname: "eth0",
        // host-device's stand-in NIC is a veth: it dies with the namespace
        // (plugins/tests/host_device.rs covers that DEL on its own).
        device_dies_with_netns: plugin_name == "host-device",
        main,
    }
    .run(&target);
}

/// Every spec version.
pub const ALL_VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// A call for `eth0` of container `id` in `netns`, with `CNI_PATH` = `path`.
pub fn call<'a>(
    command: &'a str,
    id: &'a str,
    netns: &'a str,
    path: &'a str,
) -> cni_testkit::Call<'a> {
    cni_testkit::Call {
        command,
        container_id: id,
        netns,
        ifname: "eth0",
        path,
        ..Default::default()
    }
}

/// The first address of a result, without its prefix length.
pub fn first_ip(result: &serde_json::Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no address in {result}"))
        .to_string()
}

/// A namespace "outside" the sandbox's host, joined to it by a veth (`host_dev` in
/// the host with `host_cidr`, the other end with `out_cidr` and a default route to
/// the host): a client on another network. Returns its name.
pub fn outside(
    sandbox: &cni_testkit::Sandbox,
    host_dev: &str,
    host_cidr: &str,
    out_cidr: &str,
) -> String {
    let path = sandbox.extra_netns();
    let out = Path::new(&path)
        .file_name()
        .expect("netns name")
        .to_string_lossy()
        .into_owned();
    let host = sandbox.host_name();
    let peer = format!("{host_dev}p");
    sandbox.ip(
        host,
        &[
            "link", "add", host_dev, "type", "veth", "peer", "name", &peer,
        ],
    );
    sandbox.ip(host, &["link", "set", &peer, "netns", &out]);
    sandbox.ip(host, &["addr", "add", host_cidr, "dev", host_dev]);
    sandbox.ip(host, &["link", "set", host_dev, "up"]);
    sandbox.ip(&out, &["addr", "add", out_cidr, "dev", &peer]);
    sandbox.ip(&out, &["link", "set", &peer, "up"]);
    let gateway = host_cidr.split('/').next().expect("address");
    sandbox.ip(&out, &["route", "add", "default", "via", gateway]);
    out
}

/// `cnitool VERB NAME <container netns>` in the sandbox host, with the network
/// lists of `conf_dir`, our plugins on `CNI_PATH` and `cap_args` as `CAP_ARGS`.
pub fn cnitool(
    sandbox: &cni_testkit::Sandbox,
    conf_dir: &Path,
    name: &str,
    verb: &str,
    cap_args: &str,
) -> serde_json::Value {
    let cache = conf_dir.join("cache");
    let out = sandbox.run_in_host(
        &cni_testkit::workspace_binary("cnitool"),
        &[verb, name, &sandbox.container_path()],
        &[
            ("NETCONFPATH", conf_dir.to_str().expect("utf-8 path")),
            ("CNI_PATH", &plugin_dir().display().to_string()),
            ("CAP_ARGS", cap_args),
            ("CNI_CACHE_DIR", cache.to_str().expect("utf-8 path")),
        ],
    );
    assert!(
        out.status.success(),
        "cnitool {verb}: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}
