//! Sandboxes for plugin tests.
//!
//! A [`Sandbox`] makes a "host" network namespace and a "container" one with unique
//! names, runs plugin binaries inside the host namespace exactly as a runtime would
//! (environment and stdin in, stdout, stderr and exit code out), gives a temporary
//! directory for all state, and removes everything when dropped, after a panic too.
//! It never touches the root network namespace: every plugin, command and check runs
//! inside the sandbox's own namespaces.

pub mod conformance;
pub mod query;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use cni_net::NetNs;

/// Prefix of every namespace a sandbox creates: `rcni-<pid>-<n>-host`.
const PREFIX: &str = "rcni-";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `true` when the tests can create namespaces (they run as root in CI).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Skips a kernel test when it cannot run, saying why (`return`s from the test).
/// Under `CI=true` a missing privilege is a failure: CI runs as root, and a suite
/// that skips everything must not pass.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            assert!(
                !$crate::in_ci(),
                "this test needs root to create network namespaces, and CI=true"
            );
            eprintln!("skipped: this test needs root to create network namespaces");
            return;
        }
    };
}

/// `true` when `CI=true` (as CI runs `.ci/run`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A binary of this workspace (`rcni`, `cnitool`, the test doubles `cni-test-noop`
/// and `cni-test-sleep`), from the target directory the running test was built in.
/// `cargo test --workspace` builds them all before any test runs.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// The calls the `cni-test-noop` double recorded in `log` (one JSON object per line:
/// command, `CNI_*` values, stdin, debugFile), oldest first; none if there is no log.
pub fn noop_calls(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line from cni-test-noop"))
        .collect()
}

/// A temporary plugin directory (`CNI_PATH`) holding symlinks `name -> binary`.
pub fn plugin_dir_with(links: &[(&str, &Path)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("plugin dir");
    for (name, binary) in links {
        std::os::unix::fs::symlink(binary, dir.path().join(name)).expect("symlink plugin");
    }
    dir
}

/// What a plugin run printed and how it exited.
#[derive(Debug)]
pub struct PluginOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The `CNI_*` variables of one plugin call; empty values are not set at all.
#[derive(Debug, Clone, Default)]
pub struct Call<'a> {
    pub command: &'a str,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub args: &'a str,
    pub path: &'a str,
    /// Any other variables (for example `CNI_NETNS_OVERRIDE`).
    pub extra: Vec<(&'a str, &'a str)>,
}

impl<'a> Call<'a> {
    /// The variables as a runtime sets them; unset when empty.
    pub fn env(&self) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("CNI_COMMAND", self.command),
            ("CNI_CONTAINERID", self.container_id),
            ("CNI_NETNS", self.netns),
            ("CNI_IFNAME", self.ifname),
            ("CNI_ARGS", self.args),
            ("CNI_PATH", self.path),
        ];
        env.extend(self.extra.iter().copied());
        env.retain(|(_, v)| !v.is_empty());
        env
    }
}

/// Runs `binary` with exactly `env` (plus `PATH`) and `stdin`, in the calling thread's
/// network namespace.
pub fn run_binary(binary: &Path, env: &[(&str, &str)], stdin: &str) -> PluginOutput {
    use std::io::Write;
    let spawn = || {
        Command::new(binary)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    // A script a test has just written is "text file busy" while a child another
    // test thread forked meanwhile still holds its write descriptor (until it execs).
    let mut tries = 0;
    let mut child = loop {
        match spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    }
    .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin.as_bytes());
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {}: {e}", binary.display()));
    PluginOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A host and a container network namespace plus a state directory, all removed on drop.
pub struct Sandbox {
    pub host: NetNs,
    pub container: NetNs,
    host_name: String,
    container_name: String,
    state: tempfile::TempDir,
    baseline: Snapshot,
    /// Further namespaces made with [`Sandbox::extra_netns`], removed on drop.
    extras: std::sync::Mutex<Vec<PathBuf>>,
}

impl Sandbox {
    /// Creates the namespaces. Panics if they cannot be made (tests call
    /// [`require_root!`] first).
    pub fn new() -> Sandbox {
        sweep_stale();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let base = format!("{PREFIX}{}-{n}", std::process::id());
        let host_name = format!("{base}-host");
        let container_name = format!("{base}-ctr");
        let host =
            NetNs::create(&host_name).unwrap_or_else(|e| panic!("create netns {host_name}: {e}"));
        let container = match NetNs::create(&container_name) {
            Ok(ns) => ns,
            Err(e) => {
                let _ = NetNs::remove(host.path());
                panic!("create netns {container_name}: {e}");
            }
        };
        let state = tempfile::Builder::new()
            .prefix("rcni-state-")
            .tempdir()
            .expect("temporary state directory");
        let mut sandbox = Sandbox {
            host,
            container,
            host_name,
            container_name,
            state,
            baseline: Snapshot::default(),
            extras: std::sync::Mutex::new(Vec::new()),
        };
        sandbox.baseline = sandbox.snapshot();
        sandbox
    }

    /// The container namespace's path, as a runtime passes it in `CNI_NETNS`.
    pub fn container_path(&self) -> String {
        self.container.path().display().to_string()
    }

    pub fn host_path(&self) -> String {
        self.host.path().display().to_string()
    }

    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    pub fn container_name(&self) -> &str {
        &self.container_name
    }

    /// Another container namespace (`...-x<n>`), removed with the sandbox; returns
    /// its path.
    pub fn extra_netns(&self) -> String {
        let mut extras = self.extras.lock().unwrap_or_else(|p| p.into_inner());
        let name = format!(
            "{}-x{}",
            self.host_name.trim_end_matches("-host"),
            extras.len()
        );
        let ns = NetNs::create(&name).unwrap_or_else(|e| panic!("create netns {name}: {e}"));
        extras.push(ns.path().to_path_buf());
        ns.path().display().to_string()
    }

    /// The directory for all plugin state of this test.
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Runs a plugin inside the host namespace, as a runtime on that host would.
    pub fn run_plugin(&self, binary: &Path, call: &Call, stdin: &str) -> PluginOutput {
        self.host
            .run(|| run_binary(binary, &call.env(), stdin))
            .expect("enter the sandbox host netns")
    }

    /// Starts a plugin in the host namespace as [`Sandbox::run_plugin`] does, and
    /// SIGKILLs it `after` its start: the plugin alone, or (`group`) its whole process
    /// group, children included. Returns whether it was still running then.
    pub fn kill_plugin_after(
        &self,
        binary: &Path,
        call: &Call,
        stdin: &str,
        after: std::time::Duration,
        group: bool,
    ) -> bool {
        use std::io::Write;
        use std::os::unix::process::CommandExt;
        let mut child = self
            .host
            .run(|| {
                let mut command = Command::new(binary);
                command
                    .env_clear()
                    .env(
                        "PATH",
                        std::env::var("PATH")
                            .unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
                    )
                    .envs(call.env())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                if group {
                    command.process_group(0);
                }
                command.spawn()
            })
            .expect("enter the sandbox host netns")
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        if let Some(mut pipe) = child.stdin.take() {
            let _ = pipe.write_all(stdin.as_bytes());
        }
        std::thread::sleep(after);
        let running = matches!(child.try_wait(), Ok(None));
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let signal = nix::sys::signal::Signal::SIGKILL;
        let _ = if group {
            nix::sys::signal::killpg(pid, signal)
        } else {
            nix::sys::signal::kill(pid, signal)
        };
        let _ = child.wait();
        running
    }

    /// Runs a program inside the host namespace with extra environment variables,
    /// as a runtime tool (cnitool, the scripts) would run on that host.
    pub fn run_in_host(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.host
            .run(|| {
                Command::new(program)
                    .args(args)
                    .envs(env.iter().copied())
                    .stdin(Stdio::null())
                    .output()
            })
            .expect("enter the sandbox host netns")
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
    }

    /// Runs `ip -n <ns> ARGS` and returns its stdout; panics if it fails.
    pub fn ip(&self, netns: &str, args: &[&str]) -> String {
        let output = Command::new("ip")
            .arg("-n")
            .arg(netns)
            .args(args)
            .output()
            .expect("run ip (install iproute2)");
        assert!(
            output.status.success(),
            "ip -n {netns} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Whether this kernel can make a link of `kind`: `ip link add PROBE [link
    /// PARENT] type KIND [kind_args]`, tried in the sandbox's host namespace and
    /// deleted again. `None` when it can; else the reason to print with a skip.
    pub fn kernel_lacks(
        &self,
        kind: &str,
        parent: Option<&str>,
        kind_args: &[&str],
    ) -> Option<String> {
        let probe = "rcni-probe0";
        let output = Command::new("ip")
            .args(["-n", self.host_name(), "link", "add", probe])
            .args(parent.map(|p| ["link", p]).iter().flatten())
            .args(["type", kind])
            .args(kind_args)
            .output()
            .expect("run ip (install iproute2)");
        if output.status.success() {
            let _ = Command::new("ip")
                .args(["-n", self.host_name(), "link", "del", probe])
                .output();
            return None;
        }
        Some(format!(
            "this kernel cannot make a {kind} link (module {:?} missing?): {}",
            match kind {
                "vlan" => "8021q",
                other => other,
            },
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }

    /// Runs a command inside the container namespace.
    pub fn exec_in_container(&self, program: &str, args: &[&str]) -> Output {
        self.container
            .run(|| Command::new(program).args(args).output())
            .expect("enter the container netns")
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    }

    /// Everything a plugin could leave behind: links, addresses, routes and rules in
    /// both namespaces (the loopback device's own state aside: bringing `lo` up and down
    /// is the loopback plugin's job), and files in the state directory.
    pub fn snapshot(&self) -> Snapshot {
        let mut kernel = BTreeSet::new();
        for ns in [&self.host_name, &self.container_name] {
            for args in [
                &["-o", "link", "show"][..],
                &["-o", "addr", "show"],
                &["route", "show", "table", "all"],
                &["-6", "route", "show", "table", "all"],
                &["-4", "rule", "show"],
                &["-6", "rule", "show"],
            ] {
                for line in self.ip(ns, args).lines() {
                    let line = line.trim();
                    if !line.is_empty() && !about_lo(line) {
                        kernel.insert(format!("{ns}: {line}"));
                    }
                }
            }
        }
        let mut files = BTreeSet::new();
        list_files(self.state.path(), &mut files);
        Snapshot { kernel, files }
    }

    /// Panics if anything is present now that was not there when the sandbox was made,
    /// or is gone that was.
    pub fn assert_no_leaks(&self) {
        let now = self.snapshot();
        let added: Vec<_> = now.kernel.difference(&self.baseline.kernel).collect();
        let removed: Vec<_> = self.baseline.kernel.difference(&now.kernel).collect();
        assert!(
            added.is_empty() && removed.is_empty(),
            "kernel state changed: added {added:#?}, removed {removed:#?}"
        );
        assert!(
            now.files.is_empty(),
            "files left in the state directory: {:#?}",
            now.files
        );
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Removing the namespace files lets the kernel destroy the namespaces and every
        // interface inside them. Best effort: a drop during a panic must not panic.
        let extras = self.extras.lock().unwrap_or_else(|p| p.into_inner());
        for extra in extras.iter() {
            let _ = NetNs::remove(extra);
        }
        let _ = NetNs::remove(self.container.path());
        let _ = NetNs::remove(self.host.path());
    }
}

/// A record of what exists in a sandbox.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub kernel: BTreeSet<String>,
    pub files: BTreeSet<PathBuf>,
}

/// `true` for an `ip -o` link/address line of `lo`, or a route or rule via `dev lo`.
fn about_lo(line: &str) -> bool {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let names_lo =
        tokens.len() > 1 && tokens[0].ends_with(':') && tokens[1].trim_end_matches(':') == "lo";
    names_lo || tokens.windows(2).any(|w| w == ["dev", "lo"])
}

pub(crate) fn list_files(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            list_files(&path, out);
        } else {
            out.insert(path);
        }
    }
}

/// Removes namespaces left by earlier test processes that were killed before their
/// sandboxes could drop (`rcni-<pid>-...` whose process is gone). Only our own names.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(cni_net::netns::NETNS_RUN_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = NetNs::remove(entry.path());
        }
    }
}
