//! The conformance suite: the spec's lifecycle for any plugin and configuration, in
//! one call, against the real kernel ([`SandboxTarget`]) or the fake one
//! ([`FakeTarget`]).
//!
//! [`Lifecycle::run`] first makes and removes one attachment, so that what a network
//! keeps for good (a bridge, host-local's lock file, shared firewall chains) exists;
//! that state is the baseline. Then, at every spec version given, it runs ADD, CHECK
//! (from 0.4.0), ADD again (a clean error or success, never a crash), DEL, DEL again,
//! and requires the baseline back: links, addresses, routes, rules, qdiscs, files and
//! firewall state. Last come the DELs runtimes send in odd states: never added, with
//! an empty `CNI_NETNS`, and after the netns is gone.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use cni_net::FakeKernel;
use cni_skel::invoke::PluginTable;
use cni_skel::{Context, Dispatch, Invoke};
use serde_json::Value;

use crate::{Call, PluginOutput, Sandbox, query};

/// Where a plugin runs and how its leftovers are read.
pub trait Target {
    /// The container namespace path, as `CNI_NETNS`.
    fn netns(&self) -> String;
    /// A further container namespace, for a DEL after it is gone.
    fn new_netns(&self) -> String;
    fn remove_netns(&self, path: &str);
    /// Runs the plugin under test.
    fn call(
        &self,
        command: &str,
        container_id: &str,
        netns: &str,
        ifname: &str,
        stdin: &str,
    ) -> PluginOutput {
        self.call_plugin(None, command, container_id, netns, ifname, stdin)
    }
    /// Runs the plugin under test (`None`) or another plugin of the same
    /// installation by type: the main plugin of a chain.
    fn call_plugin(
        &self,
        plugin_type: Option<&str>,
        command: &str,
        container_id: &str,
        netns: &str,
        ifname: &str,
        stdin: &str,
    ) -> PluginOutput;
    /// Everything a plugin could leave behind, one line an object.
    fn state(&self) -> BTreeSet<String>;
}

/// One plugin configuration's lifecycle.
pub struct Lifecycle {
    /// The configuration; `cniVersion` is set per version, and `prevResult` to the
    /// ADD's result for CHECK and DEL.
    pub conf: Value,
    /// The spec versions to run at (each must be one the plugin supports).
    pub versions: Vec<&'static str>,
    pub ifname: &'static str,
    /// Leave out the "DEL after the netns is gone" step: for host-device on a
    /// virtual device (a veth standing in for a NIC), which the kernel destroys with
    /// the namespace where a physical NIC would come back to the host.
    pub device_dies_with_netns: bool,
    /// For a chained (meta) plugin: the configuration of the main plugin that runs
    /// before it, as in a network config list. ADD runs the main plugin, then this
    /// one with the main plugin's result as prevResult; DEL runs this one, then the
    /// main plugin. Its `name` is set to the plugin configuration's.
    pub main: Option<Value>,
}

impl Lifecycle {
    pub fn run(&self, target: &dyn Target) {
        let netns = target.netns();
        let newest = self.versions.last().copied().unwrap_or("1.0.0");
        self.attach_and_detach(target, "warm-up", newest, &netns);
        let baseline = target.state();

        for version in &self.versions {
            let id = format!("conformance-{version}");
            let result = self.add(target, &id, version, &netns);
            if at_least(version, "0.4.0") {
                let out = target.call(
                    "CHECK",
                    &id,
                    &netns,
                    self.ifname,
                    &self.conf_at(version, Some(&result)),
                );
                expect_ok(&out, &format!("CHECK at {version}"));
            }
            // A second ADD of the same attachment: upstream's plugins refuse it or
            // converge; either way a clean answer, never a crash.
            let again = target.call(
                "ADD",
                &id,
                &netns,
                self.ifname,
                &self.conf_at(version, self.main.as_ref().map(|_| &result)),
            );
            match again.code {
                0 => {}
                1 => {
                    query::error_of(&again.stdout);
                }
                code => panic!("ADD again at {version} exited {code}: {again:?}"),
            }
            for round in ["DEL", "DEL again"] {
                let what = format!("{round} at {version}");
                self.del(target, &id, version, &netns, Some(&result), &what);
            }
            expect_state(target, &baseline, &format!("after ADD/DEL at {version}"));
        }

        let what = "DEL of an attachment never added";
        self.del(target, "never-added", newest, &netns, None, what);
        expect_state(
            target,
            &baseline,
            "after a DEL of an attachment never added",
        );

        self.add(target, "empty-netns", newest, &netns);
        let what = "DEL with an empty CNI_NETNS";
        self.del(target, "empty-netns", newest, "", None, what);
        let what = "DEL after a DEL with an empty CNI_NETNS";
        self.del(target, "empty-netns", newest, &netns, None, what);
        expect_state(target, &baseline, "after a DEL with an empty CNI_NETNS");

        if self.device_dies_with_netns {
            return;
        }
        let gone = target.new_netns();
        self.add(target, "netns-gone", newest, &gone);
        target.remove_netns(&gone);
        let what = "DEL after the netns is gone";
        self.del(target, "netns-gone", newest, &gone, None, what);
        expect_state(target, &baseline, "after a DEL with the netns gone");
    }

    fn attach_and_detach(&self, target: &dyn Target, id: &str, version: &str, netns: &str) {
        let result = self.add(target, id, version, netns);
        self.del(
            target,
            id,
            version,
            netns,
            Some(&result),
            &format!("DEL of {id}"),
        );
    }

    fn add(&self, target: &dyn Target, id: &str, version: &str, netns: &str) -> Value {
        let prev = self
            .main
            .as_ref()
            .map(|_| self.main_call(target, "ADD", id, version, netns))
            .map(|out| parse_result(&out, &format!("main plugin's ADD {id} at {version}")));
        let conf = self.conf_at(version, prev.as_ref());
        let out = target.call("ADD", id, netns, self.ifname, &conf);
        let result = parse_result(&out, &format!("ADD {id} at {version}"));
        assert_eq!(
            result["cniVersion"], version,
            "ADD at {version} printed another version: {result}"
        );
        result
    }

    /// Runs the main plugin of the chain.
    fn main_call(
        &self,
        target: &dyn Target,
        command: &str,
        id: &str,
        version: &str,
        netns: &str,
    ) -> PluginOutput {
        let mut conf = self.main.clone().unwrap_or_default();
        conf["cniVersion"] = Value::from(version);
        conf["name"] = self.conf["name"].clone();
        let plugin_type = conf["type"].as_str().unwrap_or_default().to_string();
        target.call_plugin(
            Some(&plugin_type),
            command,
            id,
            netns,
            self.ifname,
            &conf.to_string(),
        )
    }

    /// DEL of the attachment: the plugin, then the chain's main plugin.
    fn del(
        &self,
        target: &dyn Target,
        id: &str,
        version: &str,
        netns: &str,
        prev: Option<&Value>,
        what: &str,
    ) {
        let out = target.call("DEL", id, netns, self.ifname, &self.conf_at(version, prev));
        expect_ok(&out, what);
        if self.main.is_some() {
            let out = self.main_call(target, "DEL", id, version, netns);
            expect_ok(&out, &format!("main plugin's {what}"));
        }
    }

    fn conf_at(&self, version: &str, prev: Option<&Value>) -> String {
        let mut conf = self.conf.clone();
        conf["cniVersion"] = Value::from(version);
        // A chained plugin's own prevResult is in the config's version.
        if let Some(prev) = conf.get_mut("prevResult").and_then(Value::as_object_mut) {
            prev.insert("cniVersion".into(), Value::from(version));
        }
        // prevResult exists from 0.3.0 on (a chained plugin's config brings its own).
        if let Some(prev) = prev.filter(|_| at_least(version, "0.3.0")) {
            conf["prevResult"] = prev.clone();
        }
        conf.to_string()
    }
}

fn at_least(version: &str, minimum: &str) -> bool {
    cni_types::version::greater_than_or_equal(version, minimum).unwrap_or(false)
}

fn parse_result(out: &PluginOutput, what: &str) -> Value {
    assert_eq!(out.code, 0, "{what} failed: {out:?}");
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: result {:?}: {e}", out.stdout))
}

fn expect_ok(out: &PluginOutput, what: &str) {
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, ""),
        "{what} failed: {out:?}"
    );
}

/// The target's state must come back to `baseline`; a namespace's destruction is
/// asynchronous in the kernel, so this waits up to 3 s for it.
fn expect_state(target: &dyn Target, baseline: &BTreeSet<String>, when: &str) {
    let start = Instant::now();
    loop {
        let now = target.state();
        if now == *baseline {
            return;
        }
        if start.elapsed() > Duration::from_secs(3) {
            let added: Vec<_> = now.difference(baseline).collect();
            let removed: Vec<_> = baseline.difference(&now).collect();
            panic!("state changed {when}: added {added:#?}, removed {removed:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The real kernel: the plugin binary runs in a [`Sandbox`]'s host namespace.
pub struct SandboxTarget<'a> {
    pub sandbox: &'a Sandbox,
    pub binary: &'a Path,
    /// `CNI_PATH`.
    pub path: String,
}

impl Target for SandboxTarget<'_> {
    fn netns(&self) -> String {
        self.sandbox.container_path()
    }

    fn new_netns(&self) -> String {
        self.sandbox.extra_netns()
    }

    fn remove_netns(&self, path: &str) {
        let _ = cni_net::NetNs::remove(path);
    }

    fn call_plugin(
        &self,
        plugin_type: Option<&str>,
        command: &str,
        container_id: &str,
        netns: &str,
        ifname: &str,
        stdin: &str,
    ) -> PluginOutput {
        let other = plugin_type.map(|t| self.binary.parent().unwrap_or(Path::new(".")).join(t));
        let call = Call {
            command,
            container_id,
            netns,
            ifname,
            path: &self.path,
            ..Default::default()
        };
        self.sandbox
            .run_plugin(other.as_deref().unwrap_or(self.binary), &call, stdin)
    }

    fn state(&self) -> BTreeSet<String> {
        let snapshot = self.sandbox.snapshot();
        let mut state: BTreeSet<String> = snapshot
            .kernel
            .iter()
            .filter_map(|line| stable(line))
            .collect();
        state.extend(
            snapshot
                .files
                .iter()
                .map(|f| format!("file {}", f.display())),
        );
        for ns in [self.sandbox.host_name(), self.sandbox.container_name()] {
            state.extend(
                query::qdiscs(ns)
                    .lines()
                    .map(|l| format!("{ns}: qdisc {l}")),
            );
        }
        let host = self.sandbox;
        for v6 in [false, true] {
            for table in ["nat", "filter"] {
                let listing = query::iptables_table(host, v6, table);
                state.extend(
                    listing
                        .lines()
                        .map(|l| format!("ip{}tables {table}: {l}", if v6 { "6" } else { "" })),
                );
            }
        }
        state.extend(
            query::nft_ruleset(host)
                .lines()
                .map(|l| format!("nft: {l}")),
        );
        state
    }
}

/// A kernel listing line without what the kernel changes on its own, later: carrier
/// and operational state (a bridge loses carrier a moment after its last port goes),
/// DAD flags, and IPv6 link-local addresses and routes (they come with carrier).
/// `None` for a line that is all such state.
fn stable(line: &str) -> Option<String> {
    if line.contains("fe80:") || line.contains("fe80::/64") {
        return None;
    }
    let mut words: Vec<&str> = Vec::new();
    let mut tokens = line.split_whitespace().peekable();
    while let Some(token) = tokens.next() {
        match token {
            "state" => {
                tokens.next();
            }
            "linkdown" | "tentative" => {}
            t if t.starts_with('<') => {
                words.push("<flags>");
                let up = t.contains(",UP") || t.contains("<UP");
                words.push(if up { "up" } else { "down" });
            }
            t => words.push(t),
        }
    }
    Some(words.join(" "))
}

/// The fake kernel: the plugin runs in-process with `cni_skel::run`, its IPAM
/// delegates taken from a plugin table, state files in a temporary directory.
pub struct FakeTarget {
    pub fake: FakeKernel,
    plugin: &'static dyn Dispatch,
    table: PluginTable,
    state: tempfile::TempDir,
    extra: Cell<usize>,
}

/// The fake container namespace of a [`FakeTarget`].
pub const FAKE_NETNS: &str = "/fake/ctr";

impl FakeTarget {
    pub fn new(plugin: &'static dyn Dispatch, table: PluginTable) -> FakeTarget {
        let fake = FakeKernel::new();
        fake.add_netns(FAKE_NETNS);
        FakeTarget {
            fake,
            plugin,
            table,
            state: tempfile::Builder::new()
                .prefix("rcni-fake-")
                .tempdir()
                .expect("state directory"),
            extra: Cell::new(0),
        }
    }

    /// The directory for the plugins' state files (host-local's `dataDir`).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Runs `plugin` in-process, as `cni_skel::main` would.
    fn run(
        &self,
        plugin: &'static dyn Dispatch,
        command: &str,
        container_id: &str,
        netns: &str,
        ifname: &str,
        stdin: &str,
    ) -> PluginOutput {
        let env = |name: &str| {
            let value = match name {
                "CNI_COMMAND" => command,
                "CNI_CONTAINERID" => container_id,
                "CNI_NETNS" => netns,
                "CNI_IFNAME" => ifname,
                "CNI_PATH" => "/nonexistent",
                _ => return None,
            };
            Some(value.to_string()).filter(|v| !v.is_empty())
        };
        let kernel = self.fake.kernel();
        let invoke = Invoke::table_only(self.table, kernel.clone());
        let cx = Context {
            kernel: &kernel,
            delegate: &invoke,
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let code = cni_skel::run(
            plugin,
            &cx,
            &env,
            &mut stdin.as_bytes(),
            &mut stdout,
            &mut stderr,
        );
        PluginOutput {
            code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Target for FakeTarget {
    fn netns(&self) -> String {
        FAKE_NETNS.into()
    }

    fn new_netns(&self) -> String {
        let n = self.extra.get() + 1;
        self.extra.set(n);
        let path = format!("/fake/extra-{n}");
        self.fake.add_netns(&path);
        path
    }

    fn remove_netns(&self, path: &str) {
        self.fake.remove_netns(path);
    }

    fn call_plugin(
        &self,
        plugin_type: Option<&str>,
        command: &str,
        container_id: &str,
        netns: &str,
        ifname: &str,
        stdin: &str,
    ) -> PluginOutput {
        let plugin = match plugin_type {
            None => self.plugin,
            Some(t) => (self.table)(t).unwrap_or_else(|| panic!("no plugin {t:?} in the table")),
        };
        self.run(plugin, command, container_id, netns, ifname, stdin)
    }

    fn state(&self) -> BTreeSet<String> {
        let mut state: BTreeSet<String> = self
            .fake
            .snapshot()
            .0
            .into_iter()
            .flat_map(|(ns, items)| items.into_iter().map(move |i| format!("{ns}: {i}")))
            .collect();
        let mut files = BTreeSet::new();
        crate::list_files(self.state.path(), &mut files);
        state.extend(files.iter().map(|f| format!("file {}", f.display())));
        state
    }
}
