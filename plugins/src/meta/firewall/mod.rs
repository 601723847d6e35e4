//! firewall: lets the container's traffic through the host's forwarding firewall
//! (upstream `plugins/meta/firewall`), a chained plugin that reads the addresses
//! from prevResult. Backends: iptables (upstream's rules exactly), nftables (ours,
//! in-process) and firewalld; `ingressPolicy` isolates bridges from each other.
//!
//! Beyond upstream (`docs/differences.md`): an nftables backend; DEL without
//! prevResult still removes the rules (the addresses are recorded at ADD under
//! `dataDir`); GC removes the rules of containers not in the valid list; STATUS
//! says whether the backend can be used; one `iptables-restore` per family.

mod firewalld;
mod iptables;
mod nftables;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cni_net::netfilter::{Backend, iptables_usable};
use cni_skel::{Context, Plugin, Request};
use cni_types::result::Result as CniResult;
use cni_types::{Context as _, Error, Errors};
use serde::{Deserialize, Serialize};

use crate::pkg::{files, remove_state, save_state};

const DEFAULT_ADMIN_CHAIN: &str = "CNI-ADMIN";
const DEFAULT_ZONE: &str = "trusted";
/// Where ADD records the addresses it opened, for DEL without prevResult and GC.
const DATA_DIR: &str = "/var/lib/cni/firewall";

/// The chain of per-address rules, and the comments of the jumps (upstream's).
const FORWARD_CHAIN: &str = "CNI-FORWARD";
const FORWARD_JUMP_COMMENT: &str = "CNI firewall plugin rules";
const ADMIN_JUMP_COMMENT: &str = "CNI firewall plugin admin overrides";

/// firewall's own keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    backend: String,
    #[serde(rename = "iptablesAdminChainName")]
    iptables_admin_chain_name: String,
    #[serde(rename = "firewalldZone")]
    firewalld_zone: String,
    #[serde(rename = "ingressPolicy")]
    ingress_policy: String,
    #[serde(rename = "dataDir")]
    data_dir: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Which {
    Iptables,
    Nftables,
    Firewalld,
}

/// `ingressPolicy` `same-bridge` or `isolated`, on the bridge of prevResult's first
/// interface.
#[derive(Clone)]
pub(super) struct Isolation {
    bridge: String,
    isolated: bool,
}

impl Isolation {
    fn comment(&self) -> String {
        let policy = if self.isolated {
            "isolated"
        } else {
            "same-bridge"
        };
        format!("CNI firewall plugin rules (ingressPolicy: {policy})")
    }
}

/// What one attachment needs.
pub(super) struct Setup {
    ips: Vec<IpAddr>,
    admin_chain: String,
    isolation: Option<Isolation>,
}

impl Setup {
    /// The isolation of family `v6`: in the families of the addresses, or in both
    /// when there are none (upstream's `findProtos`).
    fn isolation_in(&self, v6: bool) -> Option<&Isolation> {
        let applies = self.ips.is_empty() || self.ips.iter().any(|ip| ip.is_ipv6() == v6);
        self.isolation.as_ref().filter(|_| applies)
    }

    /// The families iptables works in.
    fn families(&self) -> Vec<bool> {
        [false, true]
            .into_iter()
            .filter(|v6| {
                self.ips.iter().any(|ip| ip.is_ipv6() == *v6) || self.isolation_in(*v6).is_some()
            })
            .collect()
    }
}

/// The validated configuration.
struct Settings {
    which: Which,
    admin_chain: String,
    zone: String,
    policy: Policy,
    data_dir: PathBuf,
}

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    Open,
    SameBridge,
    Isolated,
}

impl Settings {
    /// With `lenient` (DEL), a node with no usable firewall at all is not an error:
    /// nothing can have been added there, and the nftables teardown then does
    /// nothing.
    fn load(conf: &Conf, lenient: bool) -> Result<Settings, Error> {
        let policy = match conf.ingress_policy.as_str() {
            "" | "open" => Policy::Open,
            "same-bridge" => Policy::SameBridge,
            "isolated" => Policy::Isolated,
            other => {
                return Err(Error::internal(format!(
                    "unknown ingress policy: {other:?}"
                )));
            }
        };
        let admin_chain = match conf.iptables_admin_chain_name.as_str() {
            "" => DEFAULT_ADMIN_CHAIN.to_string(),
            name => name.to_string(),
        };
        // It goes into iptables-restore input and nft chain names as it is.
        if admin_chain.len() > 28
            || admin_chain
                .contains(|c: char| c.is_whitespace() || c.is_control() || "\"'".contains(c))
        {
            return Err(Error::internal(format!(
                "invalid iptablesAdminChainName {admin_chain:?}: 1 to 28 characters, no spaces or quotes"
            )));
        }
        let which = match conf.backend.as_str() {
            "iptables" => Which::Iptables,
            "nftables" => Which::Nftables,
            "firewalld" => Which::Firewalld,
            "" if firewalld::running() => Which::Firewalld,
            "" => match Backend::default_choice() {
                Ok(Backend::Iptables) => Which::Iptables,
                Ok(Backend::Nftables) => Which::Nftables,
                Err(_) if lenient => Which::Nftables,
                Err(e) => return Err(Error::internal(e)),
            },
            other => {
                return Err(Error::internal(format!(
                    "unknown firewall backend {other:?}: want iptables, nftables or firewalld"
                )));
            }
        };
        Ok(Settings {
            which,
            admin_chain,
            zone: match conf.firewalld_zone.as_str() {
                "" => DEFAULT_ZONE.to_string(),
                zone => zone.to_string(),
            },
            policy,
            data_dir: PathBuf::from(match conf.data_dir.as_str() {
                "" => DATA_DIR,
                dir => dir,
            }),
        })
    }

    fn setup(&self, prev: &cni_types::result::v100::Result) -> Result<Setup, Error> {
        let isolation = match self.policy {
            Policy::Open => None,
            policy => {
                let bridge = prev
                    .interfaces
                    .first()
                    .map(|i| i.name.clone())
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| {
                        Error::internal(
                            "interface needs to be set for the ingress policy, make sure to chain \"firewall\" plugin with \"bridge\"",
                        )
                    })?;
                cni_net::check_name(&bridge)?;
                Some(Isolation {
                    bridge,
                    isolated: policy == Policy::Isolated,
                })
            }
        };
        Ok(Setup {
            ips: prev.ips.iter().map(|ip| ip.address.addr()).collect(),
            admin_chain: self.admin_chain.clone(),
            isolation,
        })
    }

    fn record_path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.data_dir
            .join(network)
            .join(format!("{container_id}_{ifname}"))
    }
}

/// What ADD opened, kept for DEL without prevResult and for GC.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    backend: Which,
    ips: Vec<IpAddr>,
}

impl Record {
    fn load(path: &Path) -> Option<Record> {
        let bytes = files::read_regular_bytes(path, 64 * 1024, false).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Opens the way for `setup` in one backend.
fn open(which: Which, setup: &Setup, zone: &str, container_id: &str) -> Result<(), Error> {
    match which {
        Which::Iptables => {
            let mut done: Vec<bool> = Vec::new();
            for v6 in setup.families() {
                if let Err(e) = iptables::setup(setup, v6) {
                    for v6 in done {
                        let _ = iptables::teardown(&setup.ips, v6);
                    }
                    return Err(e.into());
                }
                done.push(v6);
            }
            Ok(())
        }
        Which::Nftables => Ok(nftables::setup(setup, container_id)?),
        Which::Firewalld => {
            firewalld::add(zone, &setup.ips)?;
            // Upstream isolates with iptables whatever the backend.
            let isolation_only = Setup {
                ips: Vec::new(),
                admin_chain: setup.admin_chain.clone(),
                isolation: setup.isolation.clone(),
            };
            for v6 in isolation_only.families() {
                if let Err(e) = iptables::setup(&isolation_only, v6) {
                    firewalld::del(zone, &setup.ips);
                    return Err(e.into());
                }
            }
            Ok(())
        }
    }
}

/// Removes the accept rules of `ips` from one backend.
fn close(which: Which, ips: &[IpAddr], zone: &str) -> Result<(), Error> {
    match which {
        Which::Iptables => {
            let mut errors = Errors::new();
            for v6 in [false, true] {
                if ips.iter().any(|ip| ip.is_ipv6() == v6) && iptables_usable(v6) {
                    errors.record(iptables::teardown(ips, v6));
                }
            }
            errors.into_result()
        }
        Which::Nftables => Ok(nftables::teardown(ips)?),
        Which::Firewalld => {
            firewalld::del(zone, ips);
            Ok(())
        }
    }
}

/// What ADD and CHECK start from: the settings, prevResult (required) and what the
/// attachment needs.
fn prepare(
    req: &Request<Conf>,
    cx: &Context,
) -> Result<(Settings, cni_types::result::v100::Result, Setup), Error> {
    let settings = Settings::load(&req.plugin, false)?;
    let prev = req
        .prev_result()?
        .ok_or_else(|| Error::internal("missing prevResult from earlier plugin"))?;
    let setup = settings.setup(&prev)?;
    cx.kernel.require_firewall()?;
    Ok((settings, prev, setup))
}

pub struct Firewall;

impl Plugin for Firewall {
    type Conf = Conf;

    fn name(&self) -> &str {
        "firewall"
    }

    /// From 0.4.0, as upstream.
    fn supported_versions(&self) -> &[&'static str] {
        &cni_types::version::ALL[4..]
    }

    fn add(&self, req: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let (settings, prev, setup) = prepare(req, cx)?;
        open(settings.which, &setup, &settings.zone, &req.container_id)?;
        let record = Record {
            backend: settings.which,
            ips: setup.ips.clone(),
        };
        let path = settings.record_path(req.network(), &req.container_id, &req.ifname);
        let saved = serde_json::to_vec(&record)
            .map_err(|e| Error::internal(e.to_string()))
            .and_then(|text| save_state(&path, &text));
        if let Err(e) = saved {
            let _ = close(settings.which, &setup.ips, &settings.zone);
            return Err(e);
        }
        Ok(CniResult::V100(prev))
    }

    /// Removes the attachment's accept rules: the addresses of prevResult, else the
    /// ones ADD recorded. Chains, jumps and isolation rules stay, as upstream.
    fn del(&self, req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let settings = Settings::load(&req.plugin, true)?;
        let path = settings.record_path(req.network(), &req.container_id, &req.ifname);
        let record = Record::load(&path);
        let ips: Vec<IpAddr> = match req.prev_result().ok().flatten() {
            Some(prev) => prev.ips.iter().map(|ip| ip.address.addr()).collect(),
            None => record.as_ref().map(|r| r.ips.clone()).unwrap_or_default(),
        };
        if !ips.is_empty() {
            cx.kernel.require_firewall()?;
            let which = record.map(|r| r.backend).unwrap_or(settings.which);
            close(which, &ips, &settings.zone).context("failed to remove firewall rules")?;
        }
        remove_state(&path)
    }

    fn check(&self, req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let (settings, _, setup) = prepare(req, cx)?;
        match settings.which {
            Which::Iptables => {
                for v6 in setup.families() {
                    iptables::check(&setup, v6).map_err(Error::internal)?;
                }
                Ok(())
            }
            Which::Nftables => nftables::check(&setup).map_err(Error::internal),
            Which::Firewalld => firewalld::check(&settings.zone, &setup.ips),
        }
    }

    /// Ready when the configured backend can be used.
    fn status(&self, req: &Request<Conf>, _cx: &Context) -> Result<(), Error> {
        let settings = Settings::load(&req.plugin, false)?;
        match settings.which {
            Which::Iptables if !iptables_usable(false) => Err(Error::internal(
                "firewall backend iptables: the iptables tool is not installed",
            )),
            Which::Nftables if !cni_net::nft::available() => Err(Error::internal(
                "firewall backend nftables: this kernel has no usable nf_tables",
            )),
            Which::Firewalld if !firewalld::running() => Err(Error::internal(
                "firewall backend firewalld: firewalld is not running",
            )),
            _ => Ok(()),
        }
    }

    /// Removes the accept rules of this network's attachments that are not in
    /// `cni.dev/valid-attachments`, except addresses a valid attachment holds now
    /// (an address is reused once its container is gone).
    fn gc(&self, req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let settings = Settings::load(&req.plugin, false)?;
        let valid: BTreeSet<String> = req
            .conf
            .valid_attachments
            .iter()
            .flatten()
            .map(|a| format!("{}_{}", a.container_id, a.ifname))
            .collect();
        let dir = settings.data_dir.join(req.network());
        let mut live: BTreeSet<IpAddr> = BTreeSet::new();
        let mut stale: Vec<(PathBuf, Record)> = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(record) = Record::load(&entry.path()) else {
                continue;
            };
            if valid.contains(&name) {
                live.extend(record.ips);
            } else {
                stale.push((entry.path(), record));
            }
        }
        if stale.is_empty() {
            return Ok(());
        }
        cx.kernel.require_firewall()?;
        let mut errors = Errors::new();
        for (path, record) in stale {
            let ips: Vec<IpAddr> = record
                .ips
                .into_iter()
                .filter(|ip| !live.contains(ip))
                .collect();
            match close(record.backend, &ips, &settings.zone) {
                Ok(()) => errors.record(remove_state(&path)),
                Err(e) => errors.record(Err(e)),
            }
        }
        errors.into_result()
    }
}
