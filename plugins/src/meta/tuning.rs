//! tuning: sysctls and link attributes of the container interface (upstream
//! `plugins/meta/tuning`), a chained plugin.
//!
//! ADD writes the configured `net.*` sysctls in the container's namespace and sets
//! the MAC, MTU, promiscuous and all-multicast modes and the transmit queue length of
//! `CNI_IFNAME` in one request, after saving the attributes it changes in
//! `<dataDir>/<containerID>_<ifname>.json` (upstream's file, readable by either
//! implementation). DEL puts them back from that file; sysctls are not restored, as
//! upstream. CHECK compares the namespace with the config.
//!
//! Beyond upstream (`docs/differences.md`): DEL reports a restore that failed
//! (upstream always succeeds); a failed ADD undoes what it did; slash-form sysctl
//! keys and interface names with dots work; GC removes the backups of this
//! network's containers that are gone; STATUS says when the allowlist or `dataDir`
//! would make every ADD fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cni_net::{Link, LinkChange, NetNs, Netlink, format_mac};
use cni_skel::{Context, Plugin, Request};
use cni_types::Error;
use cni_types::result::Result as CniResult;
use serde::{Deserialize, Serialize};

use crate::pkg::{Rollback, container_mac_or, files, remove_state, save_state};

/// Where the backups of changed link attributes are kept.
const DATA_DIR: &str = "/run/cni/tuning";

/// One regular expression per line; when the file exists, every sysctl key must
/// match one of them.
pub const ALLOWLIST: &str = "/etc/cni/tuning/allowlist.conf";

/// tuning's own keys (`args`, `runtimeConfig` and `prevResult` are in `PluginConf`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    sysctl: BTreeMap<String, String>,
    mac: String,
    promisc: bool,
    mtu: i64,
    #[serde(rename = "txQLen")]
    tx_q_len: Option<i64>,
    allmulti: Option<bool>,
    #[serde(rename = "dataDir")]
    data_dir: String,
}

/// `args.cni`: overrides the config, key by key; its sysctls are merged in.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Args {
    cni: Option<CniArgs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CniArgs {
    sysctl: Option<BTreeMap<String, String>>,
    mac: Option<String>,
    promisc: Option<bool>,
    mtu: Option<i64>,
    allmulti: Option<bool>,
    #[serde(rename = "txQLen")]
    tx_q_len: Option<i64>,
}

/// The settings of one call, validated.
struct Settings {
    /// (key as configured, sysctl name in slash form, value).
    sysctls: Vec<(String, String, String)>,
    mac: Option<[u8; 6]>,
    /// Only `true` changes anything (upstream never turns promiscuous mode off).
    promisc: bool,
    mtu: Option<u32>,
    allmulti: Option<bool>,
    txqlen: Option<u32>,
    data_dir: PathBuf,
}

impl Settings {
    fn load(req: &Request<Conf>, allowlist: &Path) -> Result<Settings, Error> {
        let conf = &req.plugin;
        let args: CniArgs = req
            .conf
            .args
            .as_ref()
            .map(|v| cni_types::gojson::from_value::<Args>(v.clone().into()))
            .transpose()
            .map_err(|e| Error::internal(format!("failed to load netconf: args: {e}")))?
            .and_then(|a| a.cni)
            .unwrap_or_default();

        let duplicates = cni_types::gojson::duplicate_keys_under(&req.stdin, "sysctl")
            .map_err(|e| Error::internal(format!("failed to load netconf: {e}")))?;
        if !duplicates.is_empty() {
            return Err(Error::internal(format!(
                "duplicated sysctl keys are not allowed: {}",
                duplicates.join(", ")
            )));
        }
        if req.ifname.contains('/') {
            return Err(Error::internal(format!(
                "Interface name ({}) contains an invalid character /",
                req.ifname
            )));
        }
        let mut sysctl = conf.sysctl.clone();
        sysctl.extend(args.sysctl.clone().unwrap_or_default());
        check_allowlist(allowlist, sysctl.keys())?;
        let sysctls = sysctl
            .into_iter()
            .map(|(key, value)| {
                let name = sysctl_name(&key, &req.ifname)?;
                Ok((key, name, value))
            })
            .collect::<Result<Vec<_>, Error>>()?;

        // MAC: config < CNI_ARGS `MAC` < runtimeConfig.mac < args.cni.mac.
        let mac = match args.mac.as_deref().filter(|m| !m.is_empty()) {
            Some(text) => Some(parse_mac(text)?),
            None => container_mac_or(req, &conf.mac)?,
        };
        let mtu = args.mtu.unwrap_or(conf.mtu);
        Ok(Settings {
            sysctls,
            mac,
            promisc: args.promisc.unwrap_or(conf.promisc),
            mtu: (mtu != 0).then(|| unsigned("mtu", mtu)).transpose()?,
            allmulti: args.allmulti.or(conf.allmulti),
            txqlen: args
                .tx_q_len
                .or(conf.tx_q_len)
                .map(|n| unsigned("txQLen", n))
                .transpose()?,
            data_dir: data_dir(conf),
        })
    }

    /// Whether a link attribute changes (and so a backup is kept).
    fn changes_link(&self) -> bool {
        self.mac.is_some()
            || self.promisc
            || self.mtu.is_some()
            || self.allmulti.is_some()
            || self.txqlen.is_some()
    }

    /// What the link had of the attributes this call changes.
    fn backup_of(&self, link: &Link, network: &str) -> Backup {
        Backup {
            mac: if self.mac.is_some() {
                link.mac.clone()
            } else {
                String::new()
            },
            promisc: self.promisc.then_some(link.promisc),
            mtu: if self.mtu.is_some() { link.mtu } else { 0 },
            allmulti: self.allmulti.map(|_| link.allmulti),
            tx_q_len: self.txqlen.map(|_| link.txqlen),
            network: network.to_string(),
        }
    }
}

fn data_dir(conf: &Conf) -> PathBuf {
    PathBuf::from(match conf.data_dir.as_str() {
        "" => DATA_DIR,
        dir => dir,
    })
}

fn parse_mac(text: &str) -> Result<[u8; 6], Error> {
    cni_net::parse_mac(text)
        .map_err(|e| Error::internal(format!("invalid args {text} for MAC addr: {e}")))
}

fn unsigned(key: &str, n: i64) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| Error::internal(format!("invalid {key} {n}: must be 0 or more")))
}

/// The sysctl a key names, in slash form. As upstream, dots become slashes and the
/// first `IFNAME` becomes the interface name; unlike upstream, a key already in
/// slash form (`net/ipv4/conf/eth0.100/arp_notify`) is taken as it is, and the
/// dots of the interface name written out in a dotted key are kept (upstream
/// #779). Only `net/...` names, without `.`, `..` or empty parts, are accepted.
fn sysctl_name(key: &str, ifname: &str) -> Result<String, Error> {
    let slashed = if key.contains('/') {
        key.to_string()
    } else if let Some((head, tail)) = ifname
        .contains('.')
        .then(|| key.split_once(&format!(".{ifname}.")))
        .flatten()
    {
        format!(
            "{}/{ifname}/{}",
            head.replace('.', "/"),
            tail.replace('.', "/")
        )
    } else {
        key.replace('.', "/")
    };
    let name = slashed.replacen("IFNAME", ifname, 1);
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() < 2
        || parts[0] != "net"
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(Error::internal(format!("invalid net sysctl key: {key:?}")));
    }
    Ok(name)
}

/// Upstream's allowlist: when the file exists, each key must match (anywhere, as
/// Go's `regexp.MatchString`) one of its lines. Blank lines are skipped.
fn check_allowlist<'a>(path: &Path, keys: impl Iterator<Item = &'a String>) -> Result<(), Error> {
    let Some(patterns) = read_allowlist(path)? else {
        return Ok(());
    };
    for key in keys {
        if !patterns.iter().any(|(_, re)| re.is_match(key)) {
            let shown: Vec<&str> = patterns.iter().map(|(p, _)| p.as_str()).collect();
            return Err(Error::internal(format!(
                "Sysctl {key} is not allowed. Only the following sysctls are allowed: [{}]",
                shown.join(" ")
            )));
        }
    }
    Ok(())
}

type Allowlist = Vec<(String, regex_lite::Regex)>;

/// The allowlist, `None` when there is no file.
fn read_allowlist(path: &Path) -> Result<Option<Allowlist>, Error> {
    let text = match files::read_regular(path, 1 << 20, true) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::internal(format!(
                "failed to read the sysctl allowlist {}: {e}",
                path.display()
            )));
        }
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            regex_lite::Regex::new(line)
                .map(|re| (line.to_string(), re))
                .map_err(|e| {
                    Error::internal(format!(
                        "invalid regular expression {line:?} in {}: {e}",
                        path.display()
                    ))
                })
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// The attributes ADD changed, with their old values: upstream's backup file
/// (keys `mac`, `promisc`, `mtu`, `allmulti`, `txQLen`, each only when changed),
/// plus the network's name so that GC can tell this network's backups from others'
/// in the shared directory (Go ignores the key).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
struct Backup {
    #[serde(skip_serializing_if = "String::is_empty")]
    mac: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    promisc: Option<bool>,
    #[serde(skip_serializing_if = "is_zero")]
    mtu: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    allmulti: Option<bool>,
    #[serde(rename = "txQLen", skip_serializing_if = "Option::is_none")]
    tx_q_len: Option<u32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    network: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Backup {
    /// This backup, with `other`'s values for the attributes it does not hold.
    fn or(&self, other: &Backup) -> Backup {
        Backup {
            mac: if self.mac.is_empty() {
                other.mac.clone()
            } else {
                self.mac.clone()
            },
            promisc: self.promisc.or(other.promisc),
            mtu: if self.mtu == 0 { other.mtu } else { self.mtu },
            allmulti: self.allmulti.or(other.allmulti),
            tx_q_len: self.tx_q_len.or(other.tx_q_len),
            network: self.network.clone(),
        }
    }

    fn path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
        dir.join(format!("{container_id}_{ifname}.json"))
    }

    /// Written as Go's `MarshalIndent(…, "", " ")` writes it.
    fn save(&self, path: &Path) -> Result<(), Error> {
        let mut text = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut ser = serde_json::Serializer::with_formatter(&mut text, formatter);
        self.serialize(&mut ser)
            .map_err(|e| Error::internal(e.to_string()))?;
        save_state(path, &text)
    }

    /// The backup at `path`: `Ok(None)` when there is none.
    fn load(path: &Path) -> Result<Option<Backup>, Error> {
        match files::read_regular_bytes(path, 64 * 1024, false) {
            Ok(bytes) => cni_types::gojson::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::internal(format!("corrupt backup {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::internal(format!(
                "failed to read {}: {e}",
                path.display()
            ))),
        }
    }

    /// The change that puts the saved attributes back.
    fn restoring(&self) -> Result<LinkChange<'static>, Error> {
        Ok(LinkChange {
            mtu: (self.mtu != 0).then_some(self.mtu),
            mac: match self.mac.as_str() {
                "" => None,
                mac => Some(parse_mac(mac)?),
            },
            promisc: self.promisc,
            allmulti: self.allmulti,
            txqlen: self.tx_q_len,
            ..Default::default()
        })
    }
}

fn container_link(netlink: &mut Netlink, ifname: &str) -> Result<Link, Error> {
    netlink
        .link_by_name(ifname)?
        .ok_or_else(|| Error::internal(format!("failed to get {ifname:?}: Link not found")))
}

pub struct Tuning {
    /// The allowlist file (upstream's fixed path; another in unit tests).
    pub allowlist: &'static str,
}

/// The plugin as installed.
pub static TUNING: Tuning = Tuning {
    allowlist: ALLOWLIST,
};

impl Plugin for Tuning {
    type Conf = Conf;

    fn name(&self) -> &str {
        "tuning"
    }

    fn add(&self, req: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let settings = Settings::load(req, Path::new(self.allowlist))?;
        let mut prev = req.require_prev_result()?;
        let netns = cx.kernel.open_netns(&req.netns)?;
        let mut rollback = Rollback::default();

        for (key, name, value) in &settings.sysctls {
            let old = cx.kernel.sysctl_read(Some(&netns), name).ok();
            cx.kernel
                .sysctl_write(Some(&netns), name, value)
                .map_err(|e| Error::internal(format!("failed to set sysctl {key}: {e}")))?;
            if let Some(old) = old {
                let (kernel, netns, name) = (cx.kernel, &netns, name.clone());
                rollback.push(move || {
                    let _ = kernel.sysctl_write(Some(netns), &name, &old);
                });
            }
        }

        if settings.changes_link() {
            let mut netlink = cx.kernel.netlink(&netns)?;
            let link = container_link(&mut netlink, &req.ifname)?;
            let now = settings.backup_of(&link, req.network());
            let path = Backup::path(&settings.data_dir, &req.container_id, &req.ifname);
            // A repeated ADD keeps what the first one saved (the values from before
            // any tuning), adding only attributes it did not change.
            let earlier = Backup::load(&path).ok().flatten();
            let saved = match &earlier {
                Some(earlier) => earlier.or(&now),
                None => now.clone(),
            };
            saved.save(&path)?;
            let change = LinkChange {
                mac: settings.mac,
                promisc: settings.promisc.then_some(true),
                mtu: settings.mtu,
                allmulti: settings.allmulti,
                txqlen: settings.txqlen,
                ..Default::default()
            };
            // The kernel applies the attributes one by one: a refusal halfway leaves
            // some changed, so everything saved is put back.
            if let Err(e) = netlink.change_link(link.index, &change) {
                let _ = netlink.change_link(link.index, &now.restoring()?);
                let _ = match earlier {
                    Some(earlier) => earlier.save(&path),
                    None => remove_state(&path),
                };
                return Err(e.into());
            }
        }
        if let Some(mac) = settings.mac {
            for interface in prev.interfaces.iter_mut().filter(|i| i.name == req.ifname) {
                interface.mac = format_mac(&mac);
            }
        }
        rollback.done();
        Ok(CniResult::V100(prev))
    }

    /// Puts back what ADD changed, then forgets the backup. Unlike upstream, a
    /// restore that fails is reported (and the backup kept, for the runtime's retry);
    /// a container that is gone has nothing left to restore.
    fn del(&self, req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let path = Backup::path(&data_dir(&req.plugin), &req.container_id, &req.ifname);
        let backup = match Backup::load(&path) {
            Ok(Some(backup)) => backup,
            Ok(None) => return Ok(()),
            Err(e) => {
                // Nothing can be restored from it; keeping it would fail every DEL.
                eprintln!("tuning: {}; removing it", e.msg);
                return remove_state(&path);
            }
        };
        if let Some(netns) = open_if_present(cx, &req.netns)? {
            let mut netlink = cx.kernel.netlink(&netns)?;
            if let Some(link) = netlink.link_by_name(&req.ifname)? {
                netlink
                    .change_link(link.index, &backup.restoring()?)
                    .map_err(|e| {
                        Error::internal(format!("failed to restore {}: {e}", req.ifname))
                    })?;
            }
        }
        remove_state(&path)
    }

    fn check(&self, req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let settings = Settings::load(req, Path::new(self.allowlist))?;
        req.require_prev_result()?;
        let netns = cx.kernel.open_netns(&req.netns)?;
        for (_, name, value) in &settings.sysctls {
            let current = cx.kernel.sysctl_read(Some(&netns), name)?;
            if current != *value {
                return Err(Error::internal(format!(
                    "Error: Tuning configured value of /proc/sys/{name} is {value}, current value is {current}"
                )));
            }
        }
        let link = cx
            .kernel
            .netlink(&netns)?
            .link_by_name(&req.ifname)?
            .ok_or_else(|| Error::internal(format!("Cannot find container link {}", req.ifname)))?;
        let ifname = &req.ifname;
        if let Some(mac) = settings.mac
            && !link.mac.eq_ignore_ascii_case(&format_mac(&mac))
        {
            return Err(Error::internal(format!(
                "Error: Tuning configured Ethernet of {ifname} is {}, current value is {}",
                format_mac(&mac),
                link.mac
            )));
        }
        if settings.promisc != link.promisc {
            return Err(Error::internal(format!(
                "Error: Tuning link {ifname} configured promisc is {}, current value is {}",
                settings.promisc, link.promisc as u8
            )));
        }
        if let Some(mtu) = settings.mtu.filter(|m| *m != link.mtu) {
            return Err(Error::internal(format!(
                "Error: Tuning configured MTU of {ifname} is {mtu}, current value is {}",
                link.mtu
            )));
        }
        if let Some(allmulti) = settings.allmulti.filter(|a| *a != link.allmulti) {
            return Err(Error::internal(format!(
                "Error: Tuning configured all-multicast mode of {ifname} is {allmulti}, current value is {}",
                link.allmulti
            )));
        }
        if let Some(txqlen) = settings.txqlen.filter(|t| *t != link.txqlen) {
            return Err(Error::internal(format!(
                "Error: Tuning configured Transmit Queue Length of {ifname} is {txqlen}, current value is {}",
                link.txqlen
            )));
        }
        Ok(())
    }

    /// Ready when every ADD could work: the allowlist (if any) reads and compiles,
    /// and `dataDir` is a directory, or can become one.
    fn status(&self, req: &Request<Conf>, _cx: &Context) -> Result<(), Error> {
        read_allowlist(Path::new(self.allowlist))?;
        let dir = data_dir(&req.plugin);
        let usable = match std::fs::metadata(&dir) {
            Ok(m) => m.is_dir(),
            Err(_) => dir
                .ancestors()
                .skip(1)
                .find(|a| a.exists())
                .is_some_and(|a| a.is_dir()),
        };
        if !usable {
            return Err(Error::internal(format!(
                "dataDir {} is not a directory",
                dir.display()
            )));
        }
        Ok(())
    }

    /// Removes the backups this network's ADDs wrote for attachments not in
    /// `cni.dev/valid-attachments` (their containers are gone, and with them the
    /// links to restore). Backups of other networks, and upstream's (which do not
    /// name their network), are left alone.
    fn gc(&self, req: &Request<Conf>, _cx: &Context) -> Result<(), Error> {
        let valid: BTreeSet<String> = req
            .conf
            .valid_attachments
            .iter()
            .flatten()
            .map(|a| format!("{}_{}.json", a.container_id, a.ifname))
            .collect();
        let dir = data_dir(&req.plugin);
        let mut errors = cni_types::Errors::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") || valid.contains(&name) {
                continue;
            }
            let path = entry.path();
            if let Ok(Some(backup)) = Backup::load(&path)
                && backup.network == req.network()
            {
                errors.record(remove_state(&path));
            }
        }
        errors.into_result()
    }
}

/// The namespace at `path`, `None` when there is none (an empty `CNI_NETNS`, or a
/// namespace already gone).
fn open_if_present(cx: &Context, path: &str) -> Result<Option<NetNs>, Error> {
    if path.is_empty() {
        return Ok(None);
    }
    match cx.kernel.open_netns(path) {
        Ok(netns) => Ok(Some(netns)),
        Err(e) if e.already_gone() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
