//! What tests read back from a sandbox: the kernel's view through `ip -j`, the
//! firewall listings, host-local's reservation files, and a plugin's error JSON.

use std::path::Path;

use crate::Sandbox;

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

/// `ip -j` output of a command in a sandbox namespace.
pub fn ip_json(sandbox: &Sandbox, netns: &str, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    serde_json::from_str(&sandbox.ip(netns, &full)).expect("ip -j output")
}

/// The `local/prefixlen` addresses of `dev` in `netns`, global scope only.
pub fn addresses(sandbox: &Sandbox, netns: &str, dev: &str) -> Vec<String> {
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
pub fn links(sandbox: &Sandbox, netns: &str) -> Vec<String> {
    ip_json(sandbox, netns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// Runs a command in the sandbox's host netns and returns stdout ("" if it failed).
pub fn host_cmd(sandbox: &Sandbox, program: &str, args: &[&str]) -> String {
    let out = sandbox.run_in_host(Path::new(program), args, &[]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A table as `iptables -S` (`ip6tables` for `v6`) shows it in the sandbox host.
pub fn iptables_table(sandbox: &Sandbox, v6: bool, table: &str) -> String {
    let bin = if v6 {
        "/usr/sbin/ip6tables"
    } else {
        "/usr/sbin/iptables"
    };
    host_cmd(sandbox, bin, &["-t", table, "-S"])
}

/// The nat table as `iptables -S` shows it in the sandbox host.
pub fn iptables_nat(sandbox: &Sandbox, v6: bool) -> String {
    iptables_table(sandbox, v6, "nat")
}

/// `nft list ruleset` in the sandbox host.
pub fn nft_ruleset(sandbox: &Sandbox) -> String {
    host_cmd(sandbox, "/usr/sbin/nft", &["list", "ruleset"])
}

/// The qdiscs of a namespace, as `tc qdisc show` lists them.
pub fn qdiscs(netns: &str) -> String {
    let out = std::process::Command::new("tc")
        .args(["-n", netns, "qdisc", "show"])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
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
