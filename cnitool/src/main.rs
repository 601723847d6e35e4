//! cnitool: run a CNI network configuration by hand, as upstream's `cnitool`, plus
//! `exec` (a command in a throwaway attached netns, what `priv-net-run.sh` does) and
//! `list`.
//!
//! ```text
//! cnitool add|check|del|gc|status <net> <netns>
//! cnitool exec <net>... -- CMD [ARGS...]
//! cnitool list
//! ```
//!
//! Environment as upstream: `NETCONFPATH` (default `/etc/cni/net.d`), `CNI_PATH`,
//! `CAP_ARGS` (JSON object of capability arguments), `CNI_ARGS` (`K=V;...`),
//! `CNI_IFNAME` (default `eth0`; `-i` wins).

mod exec;
mod list;

/// The plugins' allocator (why: `plugins/src/bin/rcni.rs`).
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use libcni::{CniConfig, GcArgs, GcAttachment, NetConfList, RuntimeConf};
use sha2::{Digest, Sha512};

#[derive(Parser)]
#[command(
    name = "cnitool",
    version,
    about = "Add or remove network interfaces from a network namespace, with CNI network configurations.",
    after_help = "Environment: NETCONFPATH (default /etc/cni/net.d), CNI_PATH, CAP_ARGS (JSON), \
                  CNI_ARGS (K=V;...), CNI_IFNAME (default eth0)."
)]
struct Cli {
    /// Interface name inside the container (default: $CNI_IFNAME, else eth0).
    #[arg(short = 'i', long = "ifname", global = true)]
    ifname: Option<String>,
    /// Directory of the results cache (upstream's is fixed at /var/lib/cni).
    #[arg(long, env = "CNI_CACHE_DIR", global = true, default_value = libcni::DEFAULT_CACHE_DIR)]
    cache_dir: PathBuf,
    /// End a plugin that runs longer than this many seconds (SIGTERM, then SIGKILL).
    #[arg(long, global = true, value_name = "SECONDS")]
    timeout: Option<u64>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Attach the netns to the network and print the result.
    Add(Target),
    /// Check the attachment against the cached result.
    Check(Target),
    /// Detach the netns from the network.
    Del(Target),
    /// Delete the network's cached attachments that are not valid, then GC every plugin.
    Gc {
        #[command(flatten)]
        target: Target,
        /// An attachment to keep, by netns path as `add` got it: NETNS[:IFNAME].
        /// Without any --valid or --valid-id, every cached attachment is deleted (as upstream).
        #[arg(long = "valid", value_name = "NETNS[:IFNAME]")]
        valid: Vec<String>,
        /// An attachment to keep, by the runtime's container ID: CONTAINERID[:IFNAME].
        #[arg(long = "valid-id", value_name = "CONTAINERID[:IFNAME]")]
        valid_id: Vec<String>,
    },
    /// Ask the network's plugins whether they are ready for ADD.
    Status(Target),
    /// Run CMD in a new netns attached to lo and the networks, then detach and remove it.
    Exec {
        /// Networks to attach, in order, as eth0, eth1, ... (-i names a single one).
        #[arg(required = true, value_name = "NET")]
        networks: Vec<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Show the networks in NETCONFPATH, their plugins and the versions they support.
    List,
}

#[derive(clap::Args)]
struct Target {
    /// Network name, as in its configuration file.
    network: String,
    /// Path of the network namespace (for example /run/netns/NAME).
    netns: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Upstream exits 1 on bad usage; --help and --version are not errors.
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let cni = runtime(&cli);
    let ifname = ifname(cli.ifname.as_deref());
    match &cli.command {
        Cmd::Add(t) => {
            let (list, rt) = target(t, &ifname)?;
            let result = cni
                .add_network_list(&list, &rt)
                .map_err(|e| e.to_string())?;
            print!("{}", result.to_json_pretty());
        }
        Cmd::Check(t) => {
            let (list, rt) = target(t, &ifname)?;
            cni.check_network_list(&list, &rt)
                .map_err(|e| e.to_string())?;
        }
        Cmd::Del(t) => {
            let (list, rt) = target(t, &ifname)?;
            cni.del_network_list(&list, &rt)
                .map_err(|e| e.to_string())?;
        }
        Cmd::Gc {
            target: t,
            valid,
            valid_id,
        } => {
            let (list, _) = target(t, &ifname)?;
            let args = gc_args(valid, valid_id, &ifname)?;
            cni.gc_network_list(&list, args.as_ref())
                .map_err(|e| e.to_string())?;
        }
        Cmd::Status(t) => {
            let (list, _) = target(t, &ifname)?;
            cni.get_status_network_list(&list)
                .map_err(|e| e.to_string())?;
        }
        Cmd::Exec { networks, command } => {
            let single_ifname = cli.ifname.is_some().then_some(ifname.as_str());
            return exec::run(&cni, networks, single_ifname, command);
        }
        Cmd::List => list::print(&cni, &netconf_path()).map_err(|e| e.to_string())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime(cli: &Cli) -> CniConfig {
    let paths = std::env::var("CNI_PATH").unwrap_or_default();
    let paths: Vec<&str> = paths.split(':').filter(|p| !p.is_empty()).collect();
    let mut cni = CniConfig::new(paths).with_cache_dir(&cli.cache_dir);
    if let Some(seconds) = cli.timeout {
        cni = cni.with_timeout(Duration::from_secs(seconds));
    }
    cni
}

pub(crate) fn netconf_path() -> PathBuf {
    match std::env::var("NETCONFPATH") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/etc/cni/net.d"),
    }
}

/// `-i` wins, then a non-empty `CNI_IFNAME`, then `eth0`.
fn ifname(flag: Option<&str>) -> String {
    if let Some(name) = flag {
        return name.to_string();
    }
    match std::env::var("CNI_IFNAME") {
        Ok(name) if !name.is_empty() => name,
        _ => "eth0".into(),
    }
}

pub(crate) fn load(network: &str) -> Result<NetConfList, String> {
    libcni::conf::load_network_conf(&netconf_path(), network).map_err(|e| e.to_string())
}

fn target(t: &Target, ifname: &str) -> Result<(NetConfList, RuntimeConf), String> {
    let list = load(&t.network)?;
    Ok((list, runtime_conf(&t.netns, ifname)?))
}

/// The attachment as upstream's cnitool describes it: `CNI_ARGS`, `CAP_ARGS`, and a
/// container ID derived from the netns path.
pub(crate) fn runtime_conf(netns: &str, ifname: &str) -> Result<RuntimeConf, String> {
    let netns = absolute(Path::new(netns))?;
    Ok(RuntimeConf {
        container_id: container_id(&netns),
        netns: netns.display().to_string(),
        ifname: ifname.into(),
        args: cni_args()?,
        capability_args: capability_args()?,
    })
}

/// `cnitool-` and the first 10 bytes of SHA-512 of the absolute netns path, in hex.
fn container_id(netns: &Path) -> String {
    let digest = Sha512::digest(netns.as_os_str().as_encoded_bytes());
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    format!("cnitool-{hex}")
}

/// Go's `filepath.Abs`: joined to the working directory and cleaned lexically.
fn absolute(path: &Path) -> Result<PathBuf, String> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| e.to_string())?
            .join(path)
    };
    let mut clean = PathBuf::from("/");
    for part in joined.components() {
        match part {
            Component::Normal(p) => clean.push(p),
            Component::ParentDir => {
                clean.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(clean)
}

fn cni_args() -> Result<Vec<(String, String)>, String> {
    let text = std::env::var("CNI_ARGS").unwrap_or_default();
    let mut args = Vec::new();
    for pair in text.split(';').filter(|p| !p.is_empty()) {
        match pair.split('=').collect::<Vec<_>>()[..] {
            [k, v] if !k.is_empty() && !v.is_empty() => args.push((k.into(), v.into())),
            _ => return Err(format!("invalid CNI_ARGS pair {pair:?}")),
        }
    }
    Ok(args)
}

fn capability_args() -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match std::env::var("CAP_ARGS") {
        Ok(text) if !text.is_empty() => {
            serde_json::from_str(&text).map_err(|e| format!("invalid CAP_ARGS: {e}"))
        }
        _ => Ok(Default::default()),
    }
}

/// `--valid NETNS[:IFNAME]` and `--valid-id ID[:IFNAME]`; none at all means "nothing
/// is valid" the way upstream's cnitool GCs (no arguments).
fn gc_args(valid: &[String], valid_id: &[String], ifname: &str) -> Result<Option<GcArgs>, String> {
    if valid.is_empty() && valid_id.is_empty() {
        return Ok(None);
    }
    let split = |s: &str| match s.rsplit_once(':') {
        Some((a, b)) if !b.contains('/') => (a.to_string(), b.to_string()),
        _ => (s.to_string(), ifname.to_string()),
    };
    let mut valid_attachments = Vec::new();
    for v in valid {
        let (netns, ifname) = split(v);
        valid_attachments.push(GcAttachment {
            container_id: container_id(&absolute(Path::new(&netns))?),
            ifname,
        });
    }
    for v in valid_id {
        let (container_id, ifname) = split(v);
        valid_attachments.push(GcAttachment {
            container_id,
            ifname,
        });
    }
    Ok(Some(GcArgs { valid_attachments }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_match_upstream() {
        // python3 -c "import hashlib; print(hashlib.sha512(b'/run/netns/test').hexdigest()[:20])"
        assert_eq!(
            container_id(Path::new("/run/netns/test")),
            "cnitool-8ae22670664f2caaa6b3"
        );
    }

    #[test]
    fn paths_are_cleaned_like_go() {
        assert_eq!(
            absolute(Path::new("/run//netns/./x/../y")),
            Ok(PathBuf::from("/run/netns/y"))
        );
        assert_eq!(absolute(Path::new("/..")), Ok(PathBuf::from("/")));
    }

    #[test]
    fn gc_attachments() {
        assert_eq!(gc_args(&[], &[], "eth0"), Ok(None));
        let args = gc_args(&[], &["abc:net1".into(), "def".into()], "eth0")
            .expect("valid")
            .expect("some");
        assert_eq!(
            args.valid_attachments,
            [
                GcAttachment {
                    container_id: "abc".into(),
                    ifname: "net1".into()
                },
                GcAttachment {
                    container_id: "def".into(),
                    ifname: "eth0".into()
                }
            ]
        );
        let by_netns = gc_args(&["/run/netns/x".into()], &[], "eth1")
            .expect("valid")
            .expect("some");
        assert_eq!(
            by_netns.valid_attachments[0].container_id,
            container_id(Path::new("/run/netns/x"))
        );
        assert_eq!(by_netns.valid_attachments[0].ifname, "eth1");
    }
}
