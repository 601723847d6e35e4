//! The plugin side of CNI (upstream `pkg/skel`): a plugin implements [`Plugin`] and
//! calls [`main`]; this crate reads the `CNI_*` environment and stdin, validates them
//! as upstream does, negotiates the spec version, decodes the configuration once into
//! a [`Request`] (the common keys of `cni-types` plus the plugin's own typed config),
//! dispatches the verb with the [`Context`] its caller gave (the kernel handle and the
//! IPAM delegate), converts the result to the request's `cniVersion` and prints it, or
//! prints the error as JSON on stdout and exits 1.
//!
//! [`run`] is the same dispatcher without process globals, for tests, for running a
//! plugin in-process, and for running it against the fake kernel.

pub mod files;
pub mod invoke;

use std::io::{Read, Write};
use std::ops::Deref;

use cni_net::Kernel;
use cni_types::config::PluginConf;
use cni_types::result::{Result as CniResult, parse_prev_result, v100};
use cni_types::version::{self, PluginInfo};
use cni_types::{Error, code, validate};
use serde::de::DeserializeOwned;

pub use invoke::{Delegate, Invoke};

/// The verbs of the spec (§ "Parameters": `CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

/// One request: the `CNI_*` environment and the configuration on stdin.
#[derive(Debug, Clone, Default)]
pub struct CmdArgs {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
    pub netns_override: String,
    pub stdin: Vec<u8>,
    /// The request's `cniVersion`, with empty meaning `0.1.0`.
    pub cni_version: String,
}

impl CmdArgs {
    /// Decodes the configuration into a type, with Go's JSON rules.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, Error> {
        cni_types::gojson::from_slice(&self.stdin).map_err(|e| {
            Error::new(
                code::DECODING_FAILURE,
                format!("failed to load netconf: {e}"),
            )
        })
    }

    /// The directories of `CNI_PATH`.
    pub fn paths(&self) -> Vec<String> {
        self.path
            .split(':')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// One decoded request: the environment (`env`, also reachable through
/// `Deref`), the keys every plugin configuration has ([`PluginConf`]: name,
/// cniVersion, ipam, dns, args, runtimeConfig, prevResult, ...), and the plugin's own
/// keys, typed.
#[derive(Debug)]
pub struct Request<C> {
    pub env: CmdArgs,
    pub conf: PluginConf,
    pub plugin: C,
}

impl<C> Deref for Request<C> {
    type Target = CmdArgs;

    fn deref(&self) -> &CmdArgs {
        &self.env
    }
}

impl<C> Request<C> {
    /// The network's name.
    pub fn network(&self) -> &str {
        &self.conf.name
    }

    /// `ipam.type`, when the configuration names an IPAM plugin.
    pub fn ipam_type(&self) -> Option<&str> {
        self.conf
            .ipam
            .as_ref()
            .map(|i| i.plugin_type.as_str())
            .filter(|t| !t.is_empty())
    }

    /// prevResult in the current version, `None` without one.
    pub fn prev_result(&self) -> Result<Option<v100::Result>, Error> {
        let Some(prev) = self.conf.prev_result.clone() else {
            return Ok(None);
        };
        parse_prev_result(&self.env.cni_version, prev)
            .and_then(|r: CniResult| r.to_current().map_err(|e| e.to_string()))
            .map(Some)
            .map_err(Error::internal)
    }

    /// prevResult, which this verb needs (upstream's CHECK message without it).
    pub fn require_prev_result(&self) -> Result<v100::Result, Error> {
        self.prev_result()?
            .ok_or_else(|| Error::internal("Required prevResult missing"))
    }
}

/// What a plugin's caller hands to every verb: the kernel to work on (real, or the
/// fake in tests) and how to run delegated IPAM plugins.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub kernel: &'a Kernel,
    pub delegate: &'a dyn Delegate,
}

/// A CNI plugin. Verbs a plugin does not implement succeed silently, as upstream.
pub trait Plugin: Sync {
    /// The plugin's own configuration keys (the common ones are in [`PluginConf`]).
    type Conf: DeserializeOwned;

    /// The name in the about text (`CNI <name> plugin ...`).
    fn name(&self) -> &str;

    /// The spec versions the plugin accepts in `cniVersion` (exact strings).
    fn supported_versions(&self) -> &[&'static str] {
        &version::ALL
    }

    /// ADD: returns the result, in any version; it is printed in the request's version.
    fn add(&self, req: &Request<Self::Conf>, cx: &Context) -> Result<CniResult, Error>;

    fn del(&self, req: &Request<Self::Conf>, cx: &Context) -> Result<(), Error>;

    fn check(&self, req: &Request<Self::Conf>, cx: &Context) -> Result<(), Error>;

    fn status(&self, _req: &Request<Self::Conf>, _cx: &Context) -> Result<(), Error> {
        Ok(())
    }

    fn gc(&self, _req: &Request<Self::Conf>, _cx: &Context) -> Result<(), Error> {
        Ok(())
    }
}

/// A plugin behind a uniform face, whatever its config type: what a multicall binary
/// keeps in its table.
pub trait Dispatch: Sync {
    fn name(&self) -> &str;
    fn supported_versions(&self) -> &[&'static str];
    /// Decodes the configuration and runs one verb; `Some` result for ADD.
    fn call(
        &self,
        command: Command,
        args: CmdArgs,
        cx: &Context,
    ) -> Result<Option<CniResult>, Error>;
}

impl<P: Plugin> Dispatch for P {
    fn name(&self) -> &str {
        Plugin::name(self)
    }

    fn supported_versions(&self) -> &[&'static str] {
        Plugin::supported_versions(self)
    }

    fn call(
        &self,
        command: Command,
        args: CmdArgs,
        cx: &Context,
    ) -> Result<Option<CniResult>, Error> {
        let req = Request {
            conf: args.config()?,
            plugin: args.config()?,
            env: args,
        };
        match command {
            Command::Add => self.add(&req, cx).map(Some),
            Command::Del => self.del(&req, cx).map(|()| None),
            Command::Check => self.check(&req, cx).map(|()| None),
            Command::Status => self.status(&req, cx).map(|()| None),
            Command::Gc => self.gc(&req, cx).map(|()| None),
            Command::Version => Ok(None),
        }
    }
}

/// The version of this implementation, shown in about texts.
pub const RCNI_VERSION: &str = concat!("rcni v", env!("CARGO_PKG_VERSION"));

/// Runs `plugin` as a process would be run: reads the environment through `getenv`,
/// and returns the exit code after writing to `stdout`/`stderr`.
pub fn run(
    plugin: &dyn Dispatch,
    cx: &Context,
    getenv: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    match dispatch(plugin, cx, getenv, stdin, stdout, stderr) {
        Ok(()) => 0,
        Err(e) => {
            let _ = stdout.write_all(e.to_json_pretty().as_bytes());
            let _ = stdout.flush();
            1
        }
    }
}

/// Runs `plugin` with the process's environment and standard streams, then exits.
pub fn main(plugin: &dyn Dispatch, cx: &Context) -> ! {
    let getenv = |name: &str| std::env::var(name).ok();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    let status = run(
        plugin,
        cx,
        &getenv,
        &mut std::io::stdin().lock(),
        &mut stdout,
        &mut stderr,
    );
    let _ = stdout.flush();
    std::process::exit(status)
}

/// The environment variables in upstream's order, with the verbs that require each.
const ENV_VARS: [(&str, &[Command]); 6] = [
    ("CNI_COMMAND", &[]),
    (
        "CNI_CONTAINERID",
        &[Command::Add, Command::Check, Command::Del],
    ),
    ("CNI_NETNS", &[Command::Add, Command::Check]),
    ("CNI_IFNAME", &[Command::Add, Command::Check, Command::Del]),
    ("CNI_ARGS", &[]),
    (
        "CNI_PATH",
        &[
            Command::Add,
            Command::Check,
            Command::Del,
            Command::Gc,
            Command::Status,
        ],
    ),
];

fn dispatch(
    plugin: &dyn Dispatch,
    cx: &Context,
    getenv: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), Error> {
    let var = |name: &str| getenv(name).unwrap_or_default();
    let command_text = var("CNI_COMMAND");
    let command = Command::parse(&command_text);

    let missing: Vec<&str> = ENV_VARS
        .iter()
        .filter(|(name, required_for)| {
            var(name).is_empty()
                && (*name == "CNI_COMMAND" || command.is_some_and(|c| required_for.contains(&c)))
        })
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        if command_text.is_empty() {
            // No command at all: a person ran the binary; tell them what it is.
            let versions = plugin.supported_versions().join(", ");
            let _ = write!(
                stderr,
                "CNI {} plugin {RCNI_VERSION}\nCNI protocol versions supported: {versions}\n",
                plugin.name()
            );
            return Ok(());
        }
        return Err(Error::new(
            code::INVALID_ENVIRONMENT_VARIABLES,
            format!("required env variables [{}] missing", missing.join(",")),
        ));
    }

    let info = PluginInfo::new(plugin.supported_versions());
    if command == Some(Command::Version) {
        // VERSION never reads stdin.
        return stdout
            .write_all(info.to_json_line().as_bytes())
            .map_err(|e| Error::new(code::IO_FAILURE, e.to_string()));
    }

    let mut stdin_data = Vec::new();
    stdin
        .read_to_end(&mut stdin_data)
        .map_err(|e| Error::new(code::IO_FAILURE, format!("error reading from stdin: {e}")))?;
    validate_network_name(&stdin_data)?;

    let Some(command) = command else {
        return Err(Error::new(
            code::INVALID_ENVIRONMENT_VARIABLES,
            format!("unknown CNI_COMMAND: {command_text}"),
        ));
    };
    let mut args = CmdArgs {
        container_id: var("CNI_CONTAINERID"),
        netns: var("CNI_NETNS"),
        ifname: var("CNI_IFNAME"),
        args: var("CNI_ARGS"),
        path: var("CNI_PATH"),
        netns_override: var("CNI_NETNS_OVERRIDE"),
        stdin: stdin_data,
        cni_version: String::new(),
    };
    if matches!(command, Command::Add | Command::Check | Command::Del) {
        validate::container_id(&args.container_id)?;
        validate::interface_name(&args.ifname)?;
    }
    args.cni_version = config_version(&args.stdin)?;

    // CHECK, STATUS and GC exist only from some spec version on (spec "Version
    // considerations"); upstream checks the config, then that the plugin goes that far.
    let minimum = match command {
        Command::Check => Some("0.4.0"),
        Command::Status | Command::Gc => Some("1.1.0"),
        _ => None,
    };
    if let Some(minimum) = minimum {
        let decoding = |e: String| Error::new(code::DECODING_FAILURE, e);
        if !version::greater_than_or_equal(&args.cni_version, minimum).map_err(decoding)? {
            return Err(Error::new(
                code::INCOMPATIBLE_CNI_VERSION,
                format!("config version does not allow {}", command.as_str()),
            ));
        }
        let mut plugin_goes_that_far = false;
        for v in plugin.supported_versions() {
            if version::greater_than_or_equal(v, &args.cni_version).map_err(decoding)? {
                plugin_goes_that_far = true;
                break;
            }
        }
        if !plugin_goes_that_far {
            return Err(Error::new(
                code::INCOMPATIBLE_CNI_VERSION,
                format!("plugin version does not allow {}", command.as_str()),
            ));
        }
    }
    info.check(&args.cni_version).map_err(|details| {
        Error::with_details(
            code::INCOMPATIBLE_CNI_VERSION,
            "incompatible CNI versions",
            details,
        )
    })?;

    match command {
        Command::Add => {
            // Before anything is made (upstream checks after, leaving what it made).
            check_not_own_netns(&args)?;
            let result = plugin
                .call(command, args.clone(), cx)?
                .ok_or_else(|| Error::internal("ADD returned no result"))?;
            let result = result
                .convert(&args.cni_version)
                .map_err(|e| Error::internal(e.to_string()))?;
            stdout
                .write_all(result.to_json_pretty().as_bytes())
                .map_err(|e| Error::new(code::IO_FAILURE, e.to_string()))
        }
        Command::Del => {
            // A DEL in the plugin's own namespace would delete the host's interfaces
            // (`CNI_IFNAME` there) and set its `lo` down, as upstream does before it
            // reports code 8. Nothing can have been added there (ADD refuses first),
            // so there is nothing to remove: success, and nothing touched.
            if check_not_own_netns(&args).is_err() {
                let _ = writeln!(
                    stderr,
                    "CNI_NETNS is the plugin's own network namespace: nothing to delete"
                );
                return Ok(());
            }
            plugin.call(command, args, cx).map(drop)
        }
        Command::Version => Ok(()),
        _ => plugin.call(command, args, cx).map(drop),
    }
}

/// The config must be JSON with a valid, non-empty `name` (upstream skel).
fn validate_network_name(stdin: &[u8]) -> Result<(), Error> {
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(default)]
        name: String,
    }
    let named: Named = cni_types::gojson::from_slice(stdin).map_err(|e| {
        Error::new(
            code::DECODING_FAILURE,
            format!("error unmarshall network config: {e}"),
        )
    })?;
    if named.name.is_empty() {
        return Err(Error::new(
            code::INVALID_NETWORK_CONFIG,
            "missing network name",
        ));
    }
    validate::network_name(&named.name)
}

/// The request's `cniVersion`; missing or empty means 0.1.0.
fn config_version(stdin: &[u8]) -> Result<String, Error> {
    #[derive(serde::Deserialize)]
    struct Versioned {
        #[serde(rename = "cniVersion", default)]
        cni_version: String,
    }
    let v: Versioned = cni_types::gojson::from_slice(stdin).map_err(|e| {
        Error::new(
            code::DECODING_FAILURE,
            format!("decoding version from network config: {e}"),
        )
    })?;
    Ok(version::or_default(&v.cni_version).to_string())
}

/// Upstream refuses a `CNI_NETNS` that is the plugin's own network namespace (code 8)
/// after ADD and DEL, unless `CNI_NETNS_OVERRIDE` is `1` or `true`; here ADD refuses
/// it before anything is made and DEL leaves everything alone. A path that cannot be
/// read is not an error here.
fn check_not_own_netns(args: &CmdArgs) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    if args.netns_override == "1"
        || args.netns_override.eq_ignore_ascii_case("true")
        || args.netns.is_empty()
    {
        return Ok(());
    }
    let (Ok(theirs), Ok(ours)) = (
        std::fs::metadata(&args.netns),
        std::fs::metadata("/proc/thread-self/ns/net"),
    ) else {
        return Ok(());
    };
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        return Err(Error::new(
            code::INVALID_NETNS,
            "plugin's netns and netns from CNI_NETNS should not be the same",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Plugin for Fixed {
        type Conf = serde_json::Value;

        fn name(&self) -> &str {
            "fixed"
        }

        fn add(&self, _req: &Request<Self::Conf>, _cx: &Context) -> Result<CniResult, Error> {
            cni_types::result::Result::from_slice(
                br#"{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24"}]}"#,
            )
            .map_err(|e| Error::internal(e.to_string()))
        }

        fn del(&self, _req: &Request<Self::Conf>, _cx: &Context) -> Result<(), Error> {
            Err(Error::new(1234, "typed errors keep their code"))
        }

        fn check(&self, _req: &Request<Self::Conf>, _cx: &Context) -> Result<(), Error> {
            Ok(())
        }
    }

    struct Banana;

    impl Read for Banana {
        fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("banana"))
        }
    }

    fn call(command: &str, stdin: &mut dyn Read) -> (i32, String) {
        let env = |name: &str| {
            Some(match name {
                "CNI_COMMAND" => command.to_string(),
                "CNI_CONTAINERID" => "c1".into(),
                "CNI_NETNS" => "/run/netns/none".into(),
                "CNI_IFNAME" => "eth0".into(),
                "CNI_PATH" => "/opt/cni/bin".into(),
                _ => return None,
            })
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let kernel = Kernel::real();
        let cx = Context {
            kernel: &kernel,
            delegate: &Invoke::default(),
        };
        let code = run(&Fixed, &cx, &env, stdin, &mut out, &mut err);
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn a_failing_stdin_is_an_io_error() {
        let (code, out) = call("ADD", &mut Banana);
        assert_eq!(code, 1);
        assert_eq!(
            out,
            "{\n    \"code\": 5,\n    \"msg\": \"error reading from stdin: banana\"\n}"
        );
    }

    #[test]
    fn add_prints_the_result_in_the_requested_version() {
        let (code, out) = call("ADD", &mut &br#"{"cniVersion":"0.3.1","name":"n"}"#[..]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("\"cniVersion\": \"0.3.1\"") && out.contains("\"version\": \"4\""),
            "{out}"
        );
        let (code, out) = call("ADD", &mut &br#"{"cniVersion":"0.2.0","name":"n"}"#[..]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("\"ip4\": {\n        \"ip\": \"10.0.0.2/24\""),
            "{out}"
        );
    }

    #[test]
    fn typed_errors_keep_their_code() {
        let (code, out) = call("DEL", &mut &br#"{"cniVersion":"1.0.0","name":"n"}"#[..]);
        assert_eq!(code, 1);
        assert!(out.contains("\"code\": 1234"), "{out}");
    }
}
