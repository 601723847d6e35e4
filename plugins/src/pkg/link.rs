//! The container end of an attachment: its MAC from the request, finding and
//! deleting it on DEL, and the CHECK of it, its addresses and routes.

use cni_net::iface::global_addresses;
use cni_net::{Family, Kernel, Link, LinkKind, Netlink};
use cni_skel::{CmdArgs, Request};
use cni_types::Error;
use cni_types::net::IpNet;
use cni_types::result::v100;
use serde::Deserialize;

/// `args.cni.mac` and `runtimeConfig.mac`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct MacArgs {
    pub cni: Option<CniMacArgs>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct CniMacArgs {
    pub mac: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RuntimeMac {
    pub mac: String,
}

/// The container MAC: `CNI_ARGS` `MAC=` < `args.cni.mac` < `runtimeConfig.mac`.
pub fn container_mac<C>(req: &Request<C>) -> Result<Option<[u8; 6]>, Error> {
    let env = cni_types::args::load(&req.args, &["MAC"]).map_err(Error::internal)?;
    let mut mac = env.get("MAC").cloned().unwrap_or_default();
    if let Some(m) = req
        .conf
        .args
        .as_ref()
        .and_then(|v| cni_types::gojson::from_value::<MacArgs>(v.clone().into()).ok())
        .and_then(|a| a.cni)
        .map(|c| c.mac)
        .filter(|m| !m.is_empty())
    {
        mac = m;
    }
    if let Some(m) = req
        .conf
        .runtime_config
        .as_ref()
        .and_then(|v| cni_types::gojson::from_value::<RuntimeMac>(v.clone().into()).ok())
        .map(|r| r.mac)
        .filter(|m| !m.is_empty())
    {
        mac = m;
    }
    if mac.is_empty() {
        return Ok(None);
    }
    cni_net::parse_mac(&mac)
        .map(Some)
        .map_err(|e| Error::internal(format!("invalid MAC address {mac:?}: {e}")))
}

/// The container MAC with the plugin's own `mac` key as the weakest source: config
/// `mac` < `CNI_ARGS` `MAC` < `args.cni.mac` < `runtimeConfig.mac` (macvlan, tap).
pub fn container_mac_or<C>(req: &Request<C>, conf_mac: &str) -> Result<Option<[u8; 6]>, Error> {
    if let Some(mac) = container_mac(req)? {
        return Ok(Some(mac));
    }
    if conf_mac.is_empty() {
        return Ok(None);
    }
    cni_net::parse_mac(conf_mac)
        .map(Some)
        .map_err(|_| Error::internal(format!("invalid args {conf_mac} for MAC addr")))
}

/// CHECK of the container side (upstream `ip.ValidateExpectedInterfaceIPs` and
/// `ValidateExpectedRoute`): every prevResult address of `link` is on it, and every
/// prevResult route exists.
pub fn check_addresses_and_routes(
    netlink: &mut Netlink,
    link: &Link,
    result: &v100::Result,
) -> Result<(), Error> {
    let present = netlink.addresses(link.index)?;
    for ip in &result.ips {
        let ours = ip
            .interface
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| result.interfaces.get(i))
            .is_some_and(|i| i.name == link.name);
        if ours && !present.iter().any(|a| a.address == ip.address) {
            return Err(Error::internal(format!(
                "Failed to match addr {} on interface {}",
                ip.address, link.name
            )));
        }
    }
    let mut routes = netlink.routes(Family::V4)?;
    routes.extend(netlink.routes(Family::V6)?);
    for route in &result.routes {
        let found = routes
            .iter()
            .any(|r| r.dst == route.dst && (route.gw.is_none() || r.gw == route.gw));
        if !found {
            return Err(Error::internal(format!(
                "Failed to match route {} via {:?} on interface {}",
                route.dst, route.gw, link.name
            )));
        }
    }
    Ok(())
}

/// The first interface of a result named `name` whose sandbox is `netns`.
fn find_container_iface<'r>(
    result: &'r v100::Result,
    name: &str,
    netns: &str,
) -> Option<&'r v100::Interface> {
    result
        .interfaces
        .iter()
        .find(|i| i.name == name && i.sandbox == netns)
}

/// The container end of an attachment, found for DEL.
pub struct ContainerLink {
    netlink: Netlink,
    index: u32,
    /// Its global unicast addresses, read before it goes (upstream
    /// `DelLinkByNameAddr`): they say which firewall rules are this attachment's.
    pub addresses: Vec<IpNet>,
}

/// What a DEL finds of an attachment in the container.
pub enum Found {
    /// The link, with its addresses.
    Link(ContainerLink),
    /// The netns is there and the link is not: never made, or already deleted.
    NoLink,
    /// No netns (`CNI_NETNS` empty, or gone): the whole container is gone.
    NoNetns,
}

impl Found {
    pub fn into_link(self) -> Option<ContainerLink> {
        match self {
            Found::Link(link) => Some(link),
            _ => None,
        }
    }

    /// The attachment's addresses as a DEL can know them: the link's, else
    /// prevResult's for this interface. `None` only when neither can say and the
    /// container is gone: then everything of the container ID may go. A missing link
    /// in a live netns without prevResult owns nothing (a DEL of `eth9` never added
    /// must not touch `eth0`'s rules).
    pub fn addresses(&self, prev: Option<&v100::Result>, ifname: &str) -> Option<Vec<IpNet>> {
        let from_prev = prev.map(|p| prev_addresses(p, ifname));
        match self {
            Found::Link(link) if !link.addresses.is_empty() => Some(link.addresses.clone()),
            Found::Link(_) | Found::NoLink => Some(from_prev.unwrap_or_default()),
            Found::NoNetns => from_prev,
        }
    }
}

/// The addresses prevResult gives interface `ifname` (those without an interface
/// index count, as upstream reads them).
pub fn prev_addresses(prev: &v100::Result, ifname: &str) -> Vec<IpNet> {
    prev.ips
        .iter()
        .filter(|ip| {
            ip.interface
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| prev.interfaces.get(i))
                .is_none_or(|i| i.name == ifname)
        })
        .map(|ip| ip.address)
        .collect()
}

impl ContainerLink {
    /// DEL: `CNI_IFNAME` in the container, with its addresses.
    pub fn find(kernel: &Kernel, args: &CmdArgs) -> Result<Found, Error> {
        if args.netns.is_empty() {
            return Ok(Found::NoNetns);
        }
        let netns = match kernel.open_netns(&args.netns) {
            Ok(netns) => netns,
            Err(e) if e.already_gone() => return Ok(Found::NoNetns),
            Err(e) => return Err(e.into()),
        };
        let mut netlink = kernel.netlink(&netns)?;
        let Some(link) = netlink.link_by_name(&args.ifname)? else {
            return Ok(Found::NoLink);
        };
        let addresses = global_addresses(&mut netlink, link.index)?;
        Ok(Found::Link(ContainerLink {
            netlink,
            index: link.index,
            addresses,
        }))
    }

    /// Deletes it (and with a veth, its peer); gone meanwhile is done too.
    pub fn delete(mut self) -> Result<(), Error> {
        match self.netlink.delete_link(self.index) {
            Err(e) if !e.already_gone() => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// CHECK of the container end: prevResult names it in this netns, and the kernel has
/// it (as a link of `kind`, when given) with that MAC. Returns a socket in the
/// container netns and the link.
pub fn check_container_link(
    kernel: &Kernel,
    args: &CmdArgs,
    prev: &v100::Result,
    kind: Option<LinkKind>,
) -> Result<(Netlink, Link), Error> {
    let iface = find_container_iface(prev, &args.ifname, &args.netns).ok_or_else(|| {
        Error::internal(format!(
            "Sandbox {} does not have interface {}",
            args.netns, args.ifname
        ))
    })?;
    let netns = kernel.open_netns(&args.netns)?;
    let mut container = kernel.netlink(&netns)?;
    let link = container.link_by_name(&args.ifname)?.ok_or_else(|| {
        Error::internal(format!(
            "Container Interface name in prevResult: {} not found",
            args.ifname
        ))
    })?;
    if let Some(kind) = kind.filter(|k| *k != link.kind) {
        return Err(Error::internal(format!(
            "Error: Container interface: {} not of type {}",
            link.name,
            format!("{kind:?}").to_lowercase()
        )));
    }
    if !iface.mac.is_empty() && !iface.mac.eq_ignore_ascii_case(&link.mac) {
        return Err(Error::internal(format!(
            "Interface {} Mac {} doesn't match container Mac: {}",
            link.name, iface.mac, link.mac
        )));
    }
    Ok((container, link))
}

/// A config's `mtu`: 0 (the kernel's default) up to 65536 (`lo`'s), else a config
/// error. Go would pass 2^40 on and let it wrap to 0.
pub fn mtu(value: i64) -> Result<u32, Error> {
    u32::try_from(value)
        .ok()
        .filter(|m| *m <= 65536)
        .ok_or_else(|| Error::internal(format!("invalid MTU {value}: must be between 0 and 65536")))
}
