//! `cnitool exec NET... -- CMD`: what upstream's `priv-net-run.sh` does, in one tool
//! that always cleans up. A new netns is attached to `lo` and to each network, CMD
//! runs inside it, then every attachment is deleted (in reverse) and the netns
//! removed: after CMD ends, when an ADD fails, and on Ctrl-C or SIGTERM.
//!
//! Signals: SIGINT, SIGTERM and SIGHUP get a handler (so they no longer end
//! cnitool; CMD starts with default handling, as exec resets handlers). While CMD
//! runs they are forwarded to it; before that they stop the setup and clean up.

use std::process::{Child, Command, ExitCode};

use cni_net::NetNs;
use libcni::{CniConfig, NetConfList, RuntimeConf};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The newest spec version both we and `plugin_type` speak.
fn common_version(cni: &CniConfig, plugin_type: &str) -> Result<String, String> {
    let info = cni
        .get_version_info(plugin_type)
        .map_err(|e| e.to_string())?;
    cni_types::version::ALL
        .iter()
        .rev()
        .find(|v| info.supported_versions.iter().any(|s| s == *v))
        .map(|v| v.to_string())
        .ok_or_else(|| format!("{plugin_type} supports no version we know"))
}

fn loopback_list(cni: &CniConfig) -> Result<NetConfList, String> {
    let version = common_version(cni, "loopback")?;
    let json = format!(
        r#"{{"cniVersion":"{version}","name":"cnitool-lo","plugins":[{{"type":"loopback"}}]}}"#
    );
    NetConfList::from_slice(json.as_bytes())
}

/// One attachment made so far, to be undone.
struct Attached {
    list: NetConfList,
    rt: RuntimeConf,
}

pub fn run(
    cni: &CniConfig,
    networks: &[String],
    ifname: Option<&str>,
    command: &[String],
) -> Result<ExitCode, String> {
    if networks.len() > 1 && ifname.is_some() {
        return Err(
            "-i names the interface of a single network; with several they are eth0, eth1, ..."
                .into(),
        );
    }
    // Everything that can be checked is checked before anything is created.
    let mut lists = vec![loopback_list(cni)?];
    for network in networks {
        lists.push(crate::load(network)?);
    }
    let (program, args) = command.split_first().ok_or("no command given")?;

    // SIGCHLD too, from the start, so that CMD's exit cannot slip by unseen.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGCHLD])
        .map_err(|e| format!("install signal handlers: {e}"))?;

    let name = format!("cnitool-{}-{:08x}", std::process::id(), random());
    let netns = NetNs::create(&name).map_err(|e| format!("create netns {name}: {e}"))?;
    let netns_path = netns.path().display().to_string();
    let mut attached: Vec<Attached> = Vec::new();

    let outcome = (|| -> Result<ExitCode, String> {
        for (i, list) in lists.into_iter().enumerate() {
            let ifname = match i {
                0 => "lo".to_string(),
                _ if networks.len() == 1 => ifname.unwrap_or("eth0").to_string(),
                _ => format!("eth{}", i - 1),
            };
            let rt = crate::runtime_conf(&netns_path, &ifname)?;
            // A failed ADD is still DELeted (spec: DEL follows every ADD).
            let added = cni
                .add_network_list(&list, &rt)
                .map_err(|e| format!("{}: {e}", list.name));
            attached.push(Attached { list, rt });
            added?;
            if let Some(signal) = signals.pending().find(|s| *s != SIGCHLD) {
                return Err(format!("interrupted by signal {signal}"));
            }
        }
        let child = netns
            .run(|| Command::new(program).args(args).spawn())
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{program}: {e}"))?;
        wait_forwarding_signals(child, &mut signals)
    })();

    for a in attached.iter().rev() {
        if let Err(e) = cni.del_network_list(&a.list, &a.rt) {
            eprintln!("cnitool: DEL of {} failed: {e}", a.list.name);
        }
    }
    drop(netns);
    if let Err(e) = NetNs::remove(&netns_path) {
        eprintln!("cnitool: removing {netns_path}: {e}");
    }
    outcome
}

/// Waits for CMD, passing it any stop signal cnitool gets; its exit code becomes ours
/// (128 + signal if a signal ended it, as shells report it).
fn wait_forwarding_signals(mut child: Child, signals: &mut Signals) -> Result<ExitCode, String> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(1);
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        for signal in signals.wait() {
            if signal != SIGCHLD
                && let Ok(signal) = nix::sys::signal::Signal::try_from(signal)
            {
                let _ = nix::sys::signal::kill(pid, signal);
            }
        }
    }
}

/// A few random bits for the netns name (pid and clock; uniqueness is checked by
/// creating the file exclusively).
fn random() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    nanos ^ std::process::id().rotate_left(16)
}
