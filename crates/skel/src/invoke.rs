//! Running another plugin: finding it on `CNI_PATH`, executing it with the `CNI_*`
//! environment and a config on stdin, and turning what it printed into a result or an
//! error (upstream `pkg/invoke`). Plugins use it to delegate to IPAM plugins; the
//! runtime library uses it for everything.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output, Stdio};
use std::time::Duration;

use cni_types::result::Result as CniResult;
use cni_types::{Error, code};
use serde_json::Value;

use cni_net::Kernel;

use crate::{CmdArgs, Command, Context, Dispatch};

/// Finds `plugin` in `paths`: the first regular file named so (upstream
/// `invoke.FindInPath`; the execute bit is not checked).
pub fn find_in_path(plugin: &str, paths: &[String]) -> Result<PathBuf, String> {
    if plugin.is_empty() {
        return Err("no plugin name provided".into());
    }
    if plugin.contains('/') {
        return Err(format!("invalid plugin name: {plugin}"));
    }
    if paths.is_empty() {
        return Err("no paths provided".into());
    }
    for dir in paths {
        let candidate = Path::new(dir).join(plugin);
        if std::fs::metadata(&candidate).is_ok_and(|m| m.is_file()) {
            return Ok(candidate);
        }
    }
    Err(format!(
        "failed to find plugin {plugin:?} in path [{}]",
        paths.join(" ")
    ))
}

/// How many times a "text file busy" exec is tried (the binary is being written, for
/// example by an installer). Upstream's retry reused a spent exec.Cmd and never worked
/// (cni#855); here each try builds a new process.
const TEXT_FILE_BUSY_TRIES: u32 = 6;

/// Executes `binary` with the caller's environment plus `env`, feeding `stdin`.
/// A plugin that exits non-zero becomes an [`Error`] built as upstream builds it.
pub fn exec(binary: &Path, env: &[(&str, &str)], stdin: &[u8]) -> Result<Vec<u8>, Error> {
    exec_with_timeout(binary, env, stdin, None)
}

/// How long a plugin has to exit after SIGTERM before it gets SIGKILL.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// [`exec`] with a time limit. A plugin still running after `timeout` gets SIGTERM,
/// and SIGKILL [`TERMINATE_GRACE`] later; both go to its process group, so delegates
/// it started go with it. The result is upstream's error for a plugin that died
/// without output: `netplugin failed with no error message: signal: terminated`.
pub fn exec_with_timeout(
    binary: &Path,
    env: &[(&str, &str)],
    stdin: &[u8],
    timeout: Option<Duration>,
) -> Result<Vec<u8>, Error> {
    let output = spawn_with_retry(binary, env, stdin, timeout)?;
    if output.status.success() {
        // On success the plugin's log lines go to our stderr, as upstream forwards them.
        let _ = std::io::stderr().write_all(&output.stderr);
        return Ok(output.stdout);
    }
    Err(plugin_error(&output))
}

fn spawn_with_retry(
    binary: &Path,
    env: &[(&str, &str)],
    stdin: &[u8],
    timeout: Option<Duration>,
) -> Result<Output, Error> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut process = Process::new(binary);
        process
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if timeout.is_some() {
            // Its own process group, so that a timeout ends the plugin's children too.
            process.process_group(0);
        }
        match process.spawn() {
            Ok(child) => {
                return run_to_end(child, stdin, timeout)
                    .map_err(|e| Error::new(code::UNKNOWN, e.to_string()));
            }
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < TEXT_FILE_BUSY_TRIES => {
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => {
                return Err(Error::new(
                    code::UNKNOWN,
                    format!("fork/exec {}: {e}", binary.display()),
                ));
            }
        }
    }
}

/// Feeds stdin, collects stdout and stderr, and waits for the plugin, ending it if
/// it outlives `timeout`. Pipes are served by their own threads so that a plugin
/// writing a lot never blocks on us.
fn run_to_end(
    mut child: std::process::Child,
    stdin: &[u8],
    timeout: Option<Duration>,
) -> std::io::Result<Output> {
    let Some(timeout) = timeout else {
        if let Some(mut pipe) = child.stdin.take() {
            // A plugin that exits without reading stdin closes the pipe: not our error.
            let _ = pipe.write_all(stdin);
        }
        return child.wait_with_output();
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (exited_tx, exited_rx) = std::sync::mpsc::channel();
    let mut stdin_pipe = child.stdin.take();
    let mut stdout_pipe = child.stdout.take();
    let mut stderr_pipe = child.stderr.take();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if let Some(pipe) = stdin_pipe.as_mut() {
                let _ = pipe.write_all(stdin);
            }
        });
        let stdout = scope.spawn(move || read_all(stdout_pipe.as_mut()));
        let stderr = scope.spawn(move || read_all(stderr_pipe.as_mut()));
        // Waits without reaping (WNOWAIT): the pid stays ours until `child.wait()`
        // below, so a signal can never reach a recycled pid.
        scope.spawn(move || {
            use nix::sys::wait::{Id, WaitPidFlag, waitid};
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
            while let Err(nix::errno::Errno::EINTR) = waitid(Id::Pid(pid), flags) {}
            let _ = exited_tx.send(());
        });
        if exited_rx.recv_timeout(timeout).is_err() {
            use nix::sys::signal::{Signal, killpg};
            let _ = killpg(pid, Signal::SIGTERM);
            if exited_rx.recv_timeout(TERMINATE_GRACE).is_err() {
                let _ = killpg(pid, Signal::SIGKILL);
            }
        }
        let status = child.wait()?;
        Ok(Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    })
}

fn read_all(pipe: Option<&mut impl std::io::Read>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes);
    }
    bytes
}

/// The errno of executing a file that is open for writing (Linux).
const ETXTBSY: i32 = 26;

/// Upstream's three ways to describe a failed plugin (`pkg/invoke/raw_exec.go`).
pub fn plugin_error(output: &Output) -> Error {
    let status = exit_status_text(output.status);
    if output.stdout.is_empty() {
        if output.stderr.is_empty() {
            return Error::new(
                code::UNKNOWN,
                format!("netplugin failed with no error message: {status}"),
            );
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Error::new(code::UNKNOWN, format!("netplugin failed: {stderr:?}"));
    }
    match serde_json::from_slice::<Error>(&output.stdout) {
        Ok(e) => e,
        Err(e) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            Error::new(
                code::UNKNOWN,
                format!(
                    "netplugin failed but error parsing its diagnostic message {stdout:?}: {e}"
                ),
            )
        }
    }
}

/// Go's text for an exit status: `exit status 1`, `signal: killed`.
pub fn exit_status_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "signal: killed".into(),
        (None, Some(15)) => "signal: terminated".into(),
        (None, Some(sig)) => format!("signal: {sig}"),
        _ => status.to_string(),
    }
}

/// Reads a plugin's ADD output. A result without `cniVersion` is taken to be in the
/// request's version (cni#895); `null` is an empty result.
pub fn parse_result(stdout: &[u8], request_version: &str) -> Result<CniResult, Error> {
    let request_version = cni_types::version::or_default(request_version);
    let mut value: Value = serde_json::from_slice(stdout).map_err(|e| {
        Error::new(
            code::DECODING_FAILURE,
            format!("failed to unmarshal raw result: {e}"),
        )
    })?;
    if value.is_null() {
        value = Value::Object(Default::default());
    }
    let Value::Object(map) = &mut value else {
        return Err(Error::new(
            code::DECODING_FAILURE,
            "failed to unmarshal raw result: not a JSON object",
        ));
    };
    let version = match map.get("cniVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => {
            map.insert(
                "cniVersion".into(),
                Value::String(request_version.to_string()),
            );
            request_version.to_string()
        }
    };
    CniResult::from_value_as(&version, value)
        .map_err(|e| Error::new(code::DECODING_FAILURE, e.to_string()))
}

/// How a plugin runs the plugins it delegates to (IPAM): given to its verbs in the
/// [`Context`], so tests can put anything in its place.
pub trait Delegate: Sync {
    /// Delegated ADD; the result is read in the request's version.
    fn add(&self, plugin_type: &str, args: &CmdArgs) -> Result<CniResult, Error>;

    /// Delegated DEL, CHECK, STATUS or GC.
    fn verb(&self, plugin_type: &str, command: Command, args: &CmdArgs) -> Result<(), Error>;
}

/// Finds the plugins a multicall binary contains, by name.
pub type PluginTable = fn(&str) -> Option<&'static dyn Dispatch>;

/// The spec's delegation: runs `plugin_type` found on `CNI_PATH` with the same
/// environment and stdin as the request, only `CNI_COMMAND` changed (spec "Delegated
/// plugins"). The `CNI_*` values come from the request itself, so this also works
/// when the delegating plugin runs in-process.
///
/// With `in_process`, a delegate found on `CNI_PATH` that is this very executable
/// (same device and inode) runs in-process, on `kernel`, with exactly the inputs and
/// outputs an exec would have: exec would only start a second copy of this code.
#[derive(Clone, Default)]
pub struct Invoke {
    pub in_process: Option<PluginTable>,
    pub kernel: Kernel,
    /// Run every delegate the table has in-process, without looking at `CNI_PATH`:
    /// tests drive a plugin and its IPAM on the fake kernel so.
    pub table_only: bool,
}

impl Invoke {
    /// Delegates run from `table`, in-process on `kernel`, whatever `CNI_PATH` says.
    pub fn table_only(table: PluginTable, kernel: Kernel) -> Invoke {
        Invoke {
            in_process: Some(table),
            kernel,
            table_only: true,
        }
    }

    fn run(&self, plugin_type: &str, command: Command, args: &CmdArgs) -> Result<Vec<u8>, Error> {
        if self.table_only {
            let plugin = self
                .in_process
                .and_then(|table| table(plugin_type))
                .ok_or_else(|| Error::internal(format!("failed to find plugin {plugin_type:?}")))?;
            return self.run_in_process(plugin, command, args);
        }
        let binary = find_in_path(plugin_type, &args.paths()).map_err(Error::internal)?;
        if let Some(plugin) = self.in_process_plugin(&binary, plugin_type) {
            return self.run_in_process(plugin, command, args);
        }
        let env = delegate_env(command, args);
        exec(&binary, &env, &args.stdin)
    }

    fn in_process_plugin(&self, binary: &Path, plugin_type: &str) -> Option<&'static dyn Dispatch> {
        use std::os::unix::fs::MetadataExt;
        let table = self.in_process?;
        let found = std::fs::metadata(binary).ok()?;
        let own = std::fs::metadata("/proc/self/exe").ok()?;
        if (found.dev(), found.ino()) != (own.dev(), own.ino()) {
            return None;
        }
        table(plugin_type)
    }

    /// Runs `plugin` as [`exec`] would run it, with exactly the same inputs (the
    /// `CNI_*` environment and stdin) and outputs (stdout and the exit code, read the
    /// same way).
    fn run_in_process(
        &self,
        plugin: &dyn Dispatch,
        command: Command,
        args: &CmdArgs,
    ) -> Result<Vec<u8>, Error> {
        let env = delegate_env(command, args);
        let getenv = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .or_else(|| std::env::var(name).ok())
        };
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let cx = Context {
            kernel: &self.kernel,
            delegate: self,
        };
        let code = crate::run(
            plugin,
            &cx,
            &getenv,
            &mut &args.stdin[..],
            &mut stdout,
            &mut stderr,
        );
        // A delegate's stderr goes to ours, as an exec'd plugin's would.
        let _ = std::io::stderr().write_all(&stderr);
        if code == 0 {
            return Ok(stdout);
        }
        use std::os::unix::process::ExitStatusExt;
        Err(plugin_error(&Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout,
            stderr,
        }))
    }
}

impl Delegate for Invoke {
    fn add(&self, plugin_type: &str, args: &CmdArgs) -> Result<CniResult, Error> {
        let stdout = self.run(plugin_type, Command::Add, args)?;
        parse_result(&stdout, &args.cni_version)
    }

    fn verb(&self, plugin_type: &str, command: Command, args: &CmdArgs) -> Result<(), Error> {
        self.run(plugin_type, command, args).map(drop)
    }
}

/// The `CNI_*` environment of a delegate: the request's, with `CNI_COMMAND` replaced.
fn delegate_env(command: Command, args: &CmdArgs) -> [(&'static str, &str); 7] {
    [
        ("CNI_COMMAND", command.as_str()),
        ("CNI_CONTAINERID", args.container_id.as_str()),
        ("CNI_NETNS", args.netns.as_str()),
        ("CNI_IFNAME", args.ifname.as_str()),
        ("CNI_ARGS", args.args.as_str()),
        ("CNI_PATH", args.path.as_str()),
        ("CNI_NETNS_OVERRIDE", args.netns_override.as_str()),
    ]
}

/// Delegated ADD by exec (no in-process plugins).
pub fn delegate_add(plugin_type: &str, args: &CmdArgs) -> Result<CniResult, Error> {
    Invoke::default().add(plugin_type, args)
}

/// Delegated DEL, CHECK, STATUS or GC by exec.
pub fn delegate_verb(plugin_type: &str, command: Command, args: &CmdArgs) -> Result<(), Error> {
    Invoke::default().verb(plugin_type, command, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_in_path_rules() {
        let dir = std::env::temp_dir().join(format!("skel-find-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        std::fs::write(dir.join("plug"), b"").expect("write");
        let paths = vec!["/nonexistent".to_string(), dir.display().to_string()];
        assert_eq!(find_in_path("plug", &paths), Ok(dir.join("plug")));
        assert_eq!(
            find_in_path("", &paths),
            Err("no plugin name provided".into())
        );
        assert_eq!(
            find_in_path("a/b", &paths),
            Err("invalid plugin name: a/b".into())
        );
        assert_eq!(find_in_path("plug", &[]), Err("no paths provided".into()));
        assert_eq!(
            find_in_path("sub", &paths),
            Err(format!(
                "failed to find plugin \"sub\" in path [/nonexistent {}]",
                dir.display()
            ))
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn result_version_fixup() {
        let r = parse_result(br#"{"ips":[{"address":"10.0.0.2/24"}]}"#, "0.3.1").expect("fixed up");
        assert_eq!(r.version(), "0.3.1");
        assert_eq!(
            parse_result(b"null", "").expect("null is empty").version(),
            "0.1.0"
        );
        assert!(
            parse_result(b"", "1.0.0")
                .expect_err("empty")
                .msg
                .starts_with("failed to unmarshal raw result")
        );
    }

    fn output(code: i32, stdout: &str, stderr: &str) -> Output {
        use std::os::unix::process::ExitStatusExt;
        Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn failed_plugins_are_described_as_upstream() {
        assert_eq!(
            plugin_error(&output(1, "", "")).msg,
            "netplugin failed with no error message: exit status 1"
        );
        assert_eq!(
            plugin_error(&output(2, "", "oops\n")).msg,
            "netplugin failed: \"oops\\n\""
        );
        let e = plugin_error(&output(1, r#"{"code":7,"msg":"bad","details":"d"}"#, ""));
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_str()),
            (7, "bad", "d")
        );
        assert!(plugin_error(&output(1, "garbage", "")).msg.starts_with(
            "netplugin failed but error parsing its diagnostic message \"garbage\": "
        ));
    }
}
