//! portmap: forwards host ports to the container (upstream `plugins/meta/portmap`),
//! a chained plugin that reads the container's addresses from prevResult and the
//! mappings from `runtimeConfig.portMappings`.
//!
//! Differences from upstream (see `docs/differences.md`): DEL needs neither the
//! mappings nor prevResult (the rules are found by container ID); a repeated ADD
//! replaces the container's rules instead of duplicating them; GC removes the rules
//! of containers not in `cni.dev/valid-attachments`; ports above 65535, unknown
//! protocols and unparsable host IPs are config errors instead of firewall errors.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

mod iptables;
mod model;
mod nftables;

use cni_net::netfilter::{Backend, iptables_usable};
use cni_net::{Kernel, conntrack};
use cni_skel::{CmdArgs, Context, Plugin, Request};
use cni_types::config::GcAttachment;
use cni_types::net::IpNet;
use cni_types::result::{Result as CniResult, v100};
use cni_types::{Context as _, Error, Errors};
use serde::Deserialize;

use crate::pkg::{ContainerLink, Rollback, remove_state, save_state};
pub use model::dnat_chain;
use model::{self as rules, Mapping, PortMap, Snat};

/// Kubernetes uses bits 14 and 15, Calico 20-31.
const DEFAULT_MARK_BIT: i64 = 13;

/// Where the nftables backend records which containers of a network it forwarded
/// for, so GC can tell them from other networks' (the nft rules carry only the
/// container ID, as upstream's do).
const DEFAULT_DATA_DIR: &str = "/var/lib/cni/portmap";

/// portmap's own keys (the common ones, prevResult and the GC's valid attachments
/// among them, are in `PluginConf`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConf {
    backend: Option<String>,
    snat: Option<bool>,
    #[serde(rename = "conditionsV4")]
    conditions_v4: Option<Vec<String>>,
    #[serde(rename = "conditionsV6")]
    conditions_v6: Option<Vec<String>>,
    #[serde(rename = "masqAll")]
    masq_all: bool,
    #[serde(rename = "markMasqBit")]
    mark_masq_bit: Option<i64>,
    #[serde(rename = "externalSetMarkChain")]
    external_set_mark_chain: Option<String>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: RuntimeConfig,
    #[serde(rename = "dataDir")]
    data_dir: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeConfig {
    #[serde(rename = "portMappings")]
    port_mappings: Vec<RawMapping>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawMapping {
    #[serde(rename = "hostPort")]
    host_port: i64,
    #[serde(rename = "containerPort")]
    container_port: i64,
    protocol: String,
    #[serde(rename = "hostIP")]
    host_ip: String,
}

/// A validated configuration.
struct Conf {
    name: String,
    backend: Backend,
    snat: Snat,
    masq_all: bool,
    conditions_v4: Vec<String>,
    conditions_v6: Vec<String>,
    mappings: Vec<Mapping>,
    prev: Option<v100::Result>,
    data_dir: PathBuf,
    valid_attachments: Vec<GcAttachment>,
}

impl Conf {
    /// Validates, in upstream's order so the first error is the same. A prevResult
    /// that cannot be read is an error, except for DEL (`lenient`), which finds the
    /// rules by container ID without it.
    fn load(req: &Request<RawConf>, lenient: bool) -> Result<Conf, Error> {
        let raw = &req.plugin;
        let prev = match req.prev_result() {
            Ok(prev) => prev,
            Err(_) if lenient => None,
            Err(e) => return Err(e).context("could not parse prevResult"),
        };
        if raw.mark_masq_bit.is_some() && raw.external_set_mark_chain.is_some() {
            return Err(Error::internal(
                "Cannot specify externalSetMarkChain and markMasqBit",
            ));
        }
        let bit = raw.mark_masq_bit.unwrap_or(DEFAULT_MARK_BIT);
        if !(0..=31).contains(&bit) {
            return Err(Error::internal("MasqMarkBit must be between 0 and 31"));
        }
        let backend = backend(raw, lenient)?;
        if let Some(chain) = &raw.external_set_mark_chain {
            check_chain_name(chain)?;
        }
        for (what, conditions) in [
            ("conditionsV4", &raw.conditions_v4),
            ("conditionsV6", &raw.conditions_v6),
        ] {
            for condition in conditions.iter().flatten() {
                check_raw_text(what, condition, backend == Backend::Nftables)?;
            }
        }
        let snat = match (
            raw.snat.unwrap_or(true),
            raw.external_set_mark_chain.clone(),
        ) {
            (false, _) => Snat::Off,
            (true, Some(chain)) => Snat::External(chain),
            (true, None) => Snat::MarkBit(bit as u8),
        };
        let mappings = raw
            .runtime_config
            .port_mappings
            .iter()
            .map(mapping)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Conf {
            name: req.network().to_string(),
            backend,
            snat,
            masq_all: raw.masq_all,
            conditions_v4: raw.conditions_v4.clone().unwrap_or_default(),
            conditions_v6: raw.conditions_v6.clone().unwrap_or_default(),
            mappings,
            prev,
            data_dir: PathBuf::from(if raw.data_dir.is_empty() {
                DEFAULT_DATA_DIR
            } else {
                &raw.data_dir
            }),
            valid_attachments: req.conf.valid_attachments.clone().unwrap_or_default(),
        })
    }

    fn portmap<'a>(&'a self, args: &'a CmdArgs) -> PortMap<'a> {
        PortMap {
            network: &self.name,
            container_id: &args.container_id,
            mappings: &self.mappings,
            snat: self.snat.clone(),
            masq_all: self.masq_all,
            conditions_v4: &self.conditions_v4,
            conditions_v6: &self.conditions_v6,
        }
    }

    /// The state file recording an nftables attachment, for GC.
    fn state_file(&self, container_id: &str) -> PathBuf {
        self.data_dir.join(&self.name).join(container_id)
    }
}

/// `backend`, with upstream's default and its refusal of the other backend's
/// options (conditions are iptables-style when their first word starts with `-`,
/// or `!`, which upstream misreads as nftables).
fn backend(raw: &RawConf, lenient: bool) -> Result<Backend, Error> {
    let style = |conditions: &Option<Vec<String>>| {
        let first = conditions.as_ref()?.first().filter(|c| !c.is_empty())?;
        Some(if first.starts_with('-') || first.starts_with('!') {
            "iptables"
        } else {
            "nftables"
        })
    };
    let mut options: Vec<(&str, &str)> = Vec::new();
    if raw.external_set_mark_chain.is_some() {
        options.push(("iptables", "externalSetMarkChain"));
    }
    if let Some(s) = style(&raw.conditions_v4) {
        options.push((s, "conditionsV4"));
    }
    if let Some(s) = style(&raw.conditions_v6) {
        options.push((s, "conditionsV6"));
    }
    let requested = match raw.backend.as_deref() {
        Some(b) => b.to_string(),
        // DEL (`lenient`) never fails for want of a backend: with none usable there is
        // nothing it could remove, and the nftables teardown then does nothing.
        None => match Backend::default_choice() {
            Ok(Backend::Iptables) => "iptables".into(),
            Ok(Backend::Nftables) => "nftables".into(),
            Err(_) if lenient => "nftables".into(),
            Err(e) => return Err(Error::internal(e)),
        },
    };
    let wrong = if requested == "iptables" {
        "nftables"
    } else {
        "iptables"
    };
    let conflicting: Vec<&str> = options
        .iter()
        .filter(|(s, _)| *s == wrong)
        .map(|(_, key)| *key)
        .collect();
    if !conflicting.is_empty() {
        return Err(Error::internal(format!(
            "{requested} backend was requested but configuration contains {wrong}-specific options [{}]",
            conflicting.join(" ")
        )));
    }
    match requested.as_str() {
        "iptables" => Ok(Backend::Iptables),
        "nftables" => Ok(Backend::Nftables),
        other => Err(Error::internal(format!("unrecognized backend {other:?}"))),
    }
}

/// Raw firewall text from the config (conditions, the external mark chain) goes into
/// `iptables-restore` and `nft -f` scripts as it is: it must not carry a second
/// command (a newline, a control character, or for nft a `;`).
fn check_raw_text(what: &str, text: &str, nft: bool) -> Result<(), Error> {
    if text.chars().any(char::is_control) || (nft && text.contains(';')) {
        return Err(Error::internal(format!(
            "invalid {what} {text:?}: no control characters{}",
            if nft { " or ';'" } else { "" }
        )));
    }
    Ok(())
}

/// iptables chain names: 1 to 28 characters, no white space or quotes.
fn check_chain_name(chain: &str) -> Result<(), Error> {
    if chain.is_empty()
        || chain.len() > 28
        || chain.contains(|c: char| c.is_whitespace() || c.is_control() || c == '"' || c == '\'')
    {
        return Err(Error::internal(format!(
            "invalid externalSetMarkChain {chain:?}: an iptables chain name has 1 to 28 characters, no spaces or quotes"
        )));
    }
    Ok(())
}

fn mapping(raw: &RawMapping) -> Result<Mapping, Error> {
    let port = |n: i64, what: &str| {
        u16::try_from(n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::internal(format!("Invalid {what} port number: {n}")))
    };
    let container_port = port(raw.container_port, "container")?;
    let host_port = port(raw.host_port, "host")?;
    let protocol = raw.protocol.to_ascii_lowercase();
    if !["tcp", "udp", "sctp"].contains(&protocol.as_str()) {
        return Err(Error::internal(format!(
            "Invalid protocol {:?} for host port {host_port}: want tcp, udp or sctp",
            raw.protocol
        )));
    }
    let host_ip = if raw.host_ip.is_empty() {
        None
    } else {
        Some(
            raw.host_ip
                .parse::<IpAddr>()
                .map_err(|_| Error::internal(format!("Invalid host IP {:?}", raw.host_ip)))?,
        )
    };
    Ok(Mapping {
        host_port,
        container_port,
        protocol,
        host_ip,
    })
}

/// The container's addresses, at most one per family: upstream takes the first of
/// each family whose `interface` is `ifname` inside a sandbox (an address without
/// an interface counts).
fn container_ips(prev: &v100::Result, ifname: &str) -> Vec<IpNet> {
    let mut found: Vec<IpNet> = Vec::new();
    for ip in &prev.ips {
        let v6 = ip.address.addr().is_ipv6();
        if found.iter().any(|f| f.addr().is_ipv6() == v6) {
            continue;
        }
        if let Some(interface) = ip.interface.and_then(|i| prev.interfaces.get(i as usize))
            && (interface.name != ifname || interface.sandbox.is_empty())
        {
            continue;
        }
        found.push(ip.address);
    }
    found
}

fn parse_failure(e: Error) -> Error {
    Error {
        msg: format!("failed to parse config: {}", e.msg),
        ..e
    }
}

pub struct Portmap;

impl Plugin for Portmap {
    type Conf = RawConf;

    fn name(&self) -> &str {
        "portmap"
    }

    fn add(&self, args: &Request<RawConf>, cx: &Context) -> Result<CniResult, Error> {
        let conf = Conf::load(args, false).map_err(parse_failure)?;
        let prev = conf
            .prev
            .clone()
            .ok_or_else(|| Error::internal("must be called as chained plugin"))?;
        // No mappings: no firewall work at all (upstream #464, #510).
        if conf.mappings.is_empty() {
            return Ok(CniResult::V100(prev));
        }
        let ips = container_ips(&prev, &args.ifname);
        if ips.is_empty() {
            return Ok(CniResult::V100(prev));
        }
        cx.kernel.require_firewall()?;
        let portmap = conf.portmap(args);
        rules::setup(conf.backend, &portmap, &ips)?;
        let families: Vec<bool> = ips.iter().map(|ip| ip.addr().is_ipv6()).collect();
        let mut rollback = Rollback::default();
        rollback.push(|| {
            let _ = rules::teardown(conf.backend, &conf.name, &[&args.container_id], &families);
        });

        for ip in &ips {
            clear_udp_conntrack(&conf.mappings, ip.addr().is_ipv6());
        }
        if conf.snat != Snat::Off
            && let Some(v4) = ips.iter().find(|ip| ip.addr().is_ipv4())
        {
            enable_localnet_routing(cx.kernel, v4.addr())
                .context("unable to enable route_localnet")?;
        }
        if conf.backend == Backend::Nftables {
            record(&conf.state_file(&args.container_id), &args.ifname)?;
        }
        rollback.done();
        Ok(CniResult::V100(prev))
    }

    fn del(&self, args: &Request<RawConf>, cx: &Context) -> Result<(), Error> {
        let conf = Conf::load(args, true).map_err(parse_failure)?;
        cx.kernel.require_firewall()?;
        // The attachment's addresses: prevResult's, else its link's in the netns. Only
        // their rules go, so another attachment of the container keeps its own; an
        // attachment that owns none (never added) removes nothing; with the container
        // gone and nothing known, everything of its ID goes (upstream then does
        // nothing and leaks).
        let ips = match &conf.prev {
            Some(prev) => Some(container_ips(prev, &args.ifname)),
            None => ContainerLink::find(cx.kernel, args)?.addresses(None, &args.ifname),
        };
        rules::teardown_attachment(
            conf.backend,
            &conf.name,
            &args.container_id,
            ips.as_deref(),
            &[false, true],
        )?;
        let state = conf.state_file(&args.container_id);
        let recorded = std::fs::read_to_string(&state).unwrap_or_default();
        if conf.backend == Backend::Nftables && (ips.is_none() || recorded == args.ifname) {
            forget(&state)?;
        }
        Ok(())
    }

    fn check(&self, args: &Request<RawConf>, cx: &Context) -> Result<(), Error> {
        let conf = Conf::load(args, false)?;
        let prev = conf
            .prev
            .as_ref()
            .ok_or_else(|| Error::internal("Required prevResult missing"))?;
        if conf.mappings.is_empty() {
            return Ok(());
        }
        let ips = container_ips(prev, &args.ifname);
        cx.kernel.require_firewall()?;
        Ok(rules::check(conf.backend, &conf.portmap(args), &ips)?)
    }

    /// Removes the forwarding of this network's containers that are not in
    /// `cni.dev/valid-attachments`, in both backends: iptables rules name their
    /// network and container in comments; nft ones are known from the state files.
    fn gc(&self, args: &Request<RawConf>, cx: &Context) -> Result<(), Error> {
        let conf = Conf::load(args, false)?;
        cx.kernel.require_firewall()?;
        let valid: BTreeSet<&str> = conf
            .valid_attachments
            .iter()
            .map(|a| a.container_id.as_str())
            .collect();
        let mut errors = Errors::new();
        if iptables_usable(false) || iptables_usable(true) {
            errors.record(iptables::gc(&conf.name, &|id| valid.contains(id)).map(drop));
        }
        let network_dir = conf.data_dir.join(&conf.name);
        let stale: Vec<String> = std::fs::read_dir(&network_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| !valid.contains(id.as_str()))
            .collect();
        if !stale.is_empty() {
            let ids: Vec<&str> = stale.iter().map(String::as_str).collect();
            match rules::teardown(Backend::Nftables, &conf.name, &ids, &[false, true]) {
                Ok(()) => {
                    for id in &stale {
                        errors.record(forget(&conf.state_file(id)));
                    }
                }
                Err(e) => errors.record::<cni_net::NetError>(Err(e)),
            }
        }
        errors.into_result()
    }
}

/// Clears the UDP conntrack entries of the mapped host ports, so clients that kept
/// sending to the port reach the new container (upstream #123). Failures are only
/// logged, as upstream.
fn clear_udp_conntrack(mappings: &[Mapping], v6: bool) {
    let ports: BTreeSet<u16> = mappings
        .iter()
        .filter(|m| m.protocol == "udp")
        .map(|m| m.host_port)
        .collect();
    for port in ports {
        if let Err(e) = conntrack::delete_by_dst_port(v6, conntrack::IPPROTO_UDP, port) {
            eprintln!("failed to delete stale UDP conntrack entries for port {port}: {e}");
        }
    }
}

/// Lets 127.0.0.1 cross into the container: `route_localnet` on the host interface
/// that routes to it. The slash form of the sysctl keeps dotted interface names
/// (VLANs) working (upstream #230).
fn enable_localnet_routing(kernel: &Kernel, container: IpAddr) -> cni_net::Result<()> {
    let mut netlink = kernel.host()?;
    let Ok(Some(index)) = netlink.route_get(container) else {
        return Ok(());
    };
    let Some(link) = netlink.link_by_index(index)? else {
        return Ok(());
    };
    kernel.sysctl_ensure(
        None,
        &format!("net/ipv4/conf/{}/route_localnet", link.name),
        "1",
    )
}

fn record(path: &Path, ifname: &str) -> Result<(), Error> {
    save_state(path, ifname.as_bytes())
}

fn forget(path: &Path) -> Result<(), Error> {
    remove_state(path)
}
