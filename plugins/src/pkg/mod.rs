//! What plugins share (upstream's `pkg/`): IPAM delegation, rollback of a failed
//! ADD, the container link helpers and the CHECK of addresses and routes, and the
//! masquerade glue of bridge and ptp.

use cni_net::iface::global_addresses;
use cni_net::netfilter::{Backend, masq};
use cni_net::{Family, Kernel, Link, LinkKind, Netlink};
use cni_skel::{CmdArgs, Command, Context, Request};
use cni_types::net::IpNet;
use cni_types::result::v100;
use cni_types::{Context as _, Error};
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
        .and_then(|v| cni_types::gojson::from_value::<MacArgs>(v.clone()).ok())
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
        .and_then(|v| cni_types::gojson::from_value::<RuntimeMac>(v.clone()).ok())
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

/// IPAM ADD through the caller's delegate, as a current-version result.
pub fn ipam_add(cx: &Context, plugin_type: &str, args: &CmdArgs) -> Result<v100::Result, Error> {
    cx.delegate
        .add(plugin_type, args)?
        .to_current()
        .map_err(|e| Error::internal(e.to_string()))
}

pub fn ipam_verb(
    cx: &Context,
    plugin_type: &str,
    command: Command,
    args: &CmdArgs,
) -> Result<(), Error> {
    cx.delegate.verb(plugin_type, command, args)
}

/// Undo work of a failing ADD: each registered step runs, in reverse order, when
/// the guard is dropped without [`Rollback::done`] (upstream only releases the IPAM
/// address; this also removes the veth and the firewall rules).
#[derive(Default)]
pub struct Rollback<'a> {
    steps: Vec<Box<dyn FnOnce() + 'a>>,
}

impl<'a> Rollback<'a> {
    pub fn push(&mut self, step: impl FnOnce() + 'a) {
        self.steps.push(Box::new(step));
    }

    pub fn done(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        while let Some(step) = self.steps.pop() {
            step();
        }
    }
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
    /// `DelLinkByNameAddr`): they tell the masquerade teardown which families to
    /// look at.
    pub addresses: Vec<IpNet>,
}

impl ContainerLink {
    /// DEL: `CNI_IFNAME` in the container. No `CNI_NETNS`, a netns that is gone and a
    /// missing link are all "already done" (`None`).
    pub fn find(kernel: &Kernel, args: &CmdArgs) -> Result<Option<ContainerLink>, Error> {
        if args.netns.is_empty() {
            return Ok(None);
        }
        let netns = match kernel.open_netns(&args.netns) {
            Ok(netns) => netns,
            Err(e) if e.already_gone() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut netlink = kernel.netlink(&netns)?;
        let Some(link) = netlink.link_by_name(&args.ifname)? else {
            return Ok(None);
        };
        let addresses = global_addresses(&mut netlink, link.index)?;
        Ok(Some(ContainerLink {
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

/// DEL with ipMasq: runs `del` (the plugin's link deletion and IPAM DEL, in its
/// order) while `masq`, the masquerade teardown, runs beside it on its own thread.
/// Both mostly wait on the kernel's RCU grace periods (deleting a veth ~17–20 ms, a
/// nf_tables commit that deletes rules 11–17 ms), so side by side the DEL costs the
/// longer of the two instead of their sum. `del`'s error is reported first, as
/// upstream reports it before the masquerade's; the teardown has run either way
/// (DEL is best effort, and a repeated DEL finds nothing left to remove).
pub fn del_beside_masq(
    masq: Option<impl FnOnce() -> Result<(), Error> + Send>,
    del: impl FnOnce() -> Result<(), Error>,
) -> Result<(), Error> {
    std::thread::scope(|scope| {
        // Spawned from the host namespace: its firewall processes run there too.
        let teardown = masq.map(|masq| scope.spawn(masq));
        let deleted = del();
        let masq_removed = match teardown {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(Error::internal("the masquerade teardown panicked"))),
            None => Ok(()),
        };
        deleted.and(masq_removed)
    })
}

/// CHECK of the container end: prevResult names it in this netns, and the kernel has
/// it as a veth with that MAC. Returns a socket in the container netns and the link.
pub fn check_container_veth(
    kernel: &Kernel,
    args: &CmdArgs,
    prev: &v100::Result,
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
    if link.kind != LinkKind::Veth {
        return Err(Error::internal(format!(
            "Error: Container interface: {} not of type veth",
            link.name
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

/// The config's `ipMasqBackend`, checked once when the config is loaded.
pub fn masq_backend(ip_masq: bool, requested: Option<&str>) -> Result<Option<Backend>, Error> {
    if !ip_masq {
        return Ok(None);
    }
    Backend::choose(requested, "ipmasq backend")
        .map(Some)
        .map_err(Error::internal)
}

/// The owner of an attachment's masquerade rules.
pub fn masq_owner<'a>(network: &'a str, args: &'a CmdArgs) -> masq::Owner<'a> {
    masq::Owner {
        network,
        ifname: &args.ifname,
        container_id: &args.container_id,
    }
}

/// ipMasq on ADD, last step: masquerade from the result's addresses, with the
/// firewall process the plugin started at its beginning (`masq::Pending::start`);
/// undone by `rollback` if the ADD fails later.
pub fn setup_masq<'a>(
    kernel: &Kernel,
    pending: masq::Pending,
    result: &v100::Result,
    owner: masq::Owner<'a>,
    rollback: &mut Rollback<'a>,
) -> Result<(), Error> {
    let ips: Vec<IpNet> = result.ips.iter().map(|ip| ip.address).collect();
    kernel.require_firewall()?;
    rollback.push(move || {
        let _ = masq::teardown(&[], &owner);
    });
    pending
        .finish(&ips, &owner)
        .context("failed to set up IP masquerade")
}

/// The ipMasq teardown of a DEL, to run beside the link deletion
/// ([`del_beside_masq`]). The rules are found by name, so unlike upstream
/// (plugins#810) they go also when the link or netns is already gone; the link's
/// addresses, else prevResult's, only narrow the families to look at (and let the
/// common case skip reading the table).
pub fn teardown_masq<'a, C>(
    kernel: &Kernel,
    link: Option<&ContainerLink>,
    req: &'a Request<C>,
) -> Result<impl FnOnce() -> Result<(), Error> + Send + 'a, Error> {
    kernel.require_firewall()?;
    let mut addresses = link.map(|l| l.addresses.clone()).unwrap_or_default();
    if addresses.is_empty()
        && let Ok(Some(prev)) = req.prev_result()
    {
        addresses = prev.ips.iter().map(|ip| ip.address).collect();
    }
    let owner = masq_owner(req.network(), &req.env);
    Ok(move || masq::teardown(&addresses, &owner).context("failed to tear down IP masquerade"))
}
