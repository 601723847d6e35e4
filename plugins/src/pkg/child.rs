//! What the plugins that make one link in the container share (macvlan, ipvlan,
//! vlan, dummy, tap): finding the master, creating the link there in one request,
//! the L3 (IPAM) or L2 finish, CHECK, and IPAM-first DEL.
//!
//! Upstream creates these links under a temporary `vethXXXXXXXX` name and renames
//! them inside the container. Here they are created directly in the container's
//! namespace under `CNI_IFNAME` (`IFLA_NET_NS_FD`; the kernel checks the name there):
//! no temporary name can clash with a concurrent ADD or be left behind.

use cni_net::iface::configure_iface;
use cni_net::{Family, Kernel, KindSpec, Link, LinkKind, LinkSpec, NetNs, Netlink};
use cni_skel::{Command, Context, Request};
use cni_types::result::v100;
use cni_types::{Context as _, Error};

use super::{
    ContainerLink, Rollback, check_addresses_and_routes, check_container_link, ipam_add, ipam_verb,
};

/// What an ADD of a link in the container works with: the container's namespace
/// and socket, and the host's socket unless the master lives in the container
/// (`linkInContainer`).
struct Sides {
    netns: NetNs,
    container: Netlink,
    host: Option<Netlink>,
}

impl Sides {
    fn open(kernel: &Kernel, netns: &str, link_in_container: bool) -> Result<Sides, Error> {
        let netns = kernel
            .open_netns(netns)
            .context(format!("failed to open netns {netns:?}"))?;
        let container = kernel.netlink(&netns)?;
        let host = match link_in_container {
            true => None,
            false => Some(kernel.host()?),
        };
        Ok(Sides {
            netns,
            container,
            host,
        })
    }

    /// The socket where the master is.
    fn master_side(&mut self) -> &mut Netlink {
        self.host.as_mut().unwrap_or(&mut self.container)
    }
}

/// The master by name, or with an empty name the interface of the first default
/// route (IPv4, then IPv6), as upstream's `getDefaultRouteInterfaceName`.
pub fn find_master(netlink: &mut Netlink, name: &str) -> Result<Link, Error> {
    if !name.is_empty() {
        return netlink.link_by_name(name)?.ok_or_else(|| {
            Error::internal(format!("failed to lookup master {name:?}: Link not found"))
        });
    }
    for family in [Family::V4, Family::V6] {
        let routes = netlink.routes(family)?;
        let oif = routes
            .iter()
            .filter(|r| r.dst.prefix_len() == 0)
            .find_map(|r| r.oif);
        if let Some(link) = oif.map(|i| netlink.link_by_index(i)).transpose()?.flatten() {
            return Ok(link);
        }
    }
    Err(Error::internal("no default route interface found"))
}

/// A config's `mtu` for a child of `master`: 0 (the kernel's default, the master's)
/// up to the master's MTU (macvlan, vlan; upstream's message).
pub fn mtu_within_master(mtu: i64, master: &Link) -> Result<u32, Error> {
    u32::try_from(mtu)
        .ok()
        .filter(|m| *m <= master.mtu)
        .ok_or_else(|| {
            Error::internal(format!(
                "invalid MTU {mtu}, must be [0, master MTU({})]",
                master.mtu
            ))
        })
}

/// Creates `spec` (named `CNI_IFNAME`; `spec.netns` set when `creator` is not the
/// container's socket) and returns it as the container sees it. From here on a
/// failing ADD deletes it.
pub fn create_in_container<'a>(
    kernel: &'a Kernel,
    netns: &'a NetNs,
    creator: Option<&mut Netlink>,
    container: &mut Netlink,
    spec: &LinkSpec<'a>,
    rollback: &mut Rollback<'a>,
) -> Result<Link, Error> {
    let what = format!("{:?}", spec.kind.kind()).to_lowercase();
    match creator {
        Some(creator) => creator.create_link(spec),
        None => container.create_link(spec),
    }
    .context(format!("failed to create {what}"))?;
    rollback.push_link_removal_by_name(kernel, netns, spec.name);
    Ok(container.require_link(spec.name)?)
}

/// The end of an ADD: with IPAM, its addresses on `link` (see
/// [`add_ipam_addresses`]); without IPAM but `chained` with addresses (ipvlan), those
/// move to `link`; otherwise the link is only brought up (L2). The result's DNS is
/// the config's (IPAM's is dropped, as upstream's macvlan, ipvlan, vlan, tap).
#[allow(clippy::too_many_arguments)]
pub fn finish_add<'a, C>(
    cx: &'a Context,
    args: &'a Request<C>,
    netns: &NetNs,
    container: &mut Netlink,
    link: &Link,
    announce: bool,
    chained: Option<v100::Result>,
    rollback: &mut Rollback<'a>,
) -> Result<v100::Result, Error> {
    let mut result = match (args.ipam_type(), chained) {
        (Some(ipam_type), _) => add_ipam_addresses(
            cx, args, ipam_type, netns, container, link, announce, rollback,
        )?,
        (None, Some(prev)) if !prev.ips.is_empty() => {
            let mut result = single_interface_result(link, args);
            result.ips = prev.ips;
            result.routes = prev.routes;
            configure(cx, netns, container, link, &mut result, announce)?;
            result
        }
        (None, _) => {
            container.set_link_up(link.index, true)?;
            single_interface_result(link, args)
        }
    };
    result.dns = args.conf.dns.clone();
    Ok(result)
}

/// A child link of a master (macvlan, ipvlan, vlan) as a plugin describes it once it
/// has looked at the master.
pub struct Child {
    pub kind: KindSpec<'static>,
    pub parent: u32,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
}

/// The whole ADD of a child link: the sockets (the master on the host, or in the
/// container with `linkInContainer`), `child` given the master's side, the link made
/// in the container under `CNI_IFNAME`, then [`finish_add`]. A failure at any step
/// leaves nothing.
pub fn add_child<'a, C>(
    cx: &'a Context,
    args: &'a Request<C>,
    link_in_container: bool,
    announce: bool,
    chained: Option<v100::Result>,
    child: impl FnOnce(&mut Netlink) -> Result<Child, Error>,
) -> Result<v100::Result, Error> {
    let kernel = cx.kernel;
    let mut sides = Sides::open(kernel, &args.netns, link_in_container)?;
    let child = child(sides.master_side())?;
    let spec = LinkSpec {
        parent: Some(child.parent),
        // Made from the host's side, it is created in the container.
        netns: sides.host.is_some().then_some(&sides.netns),
        mtu: child.mtu,
        mac: child.mac,
        ..LinkSpec::new(&args.ifname, child.kind)
    };
    let mut rollback = Rollback::default();
    let link = create_in_container(
        kernel,
        &sides.netns,
        sides.host.as_mut(),
        &mut sides.container,
        &spec,
        &mut rollback,
    )?;
    let result = finish_add(
        cx,
        args,
        &sides.netns,
        &mut sides.container,
        &link,
        announce,
        chained,
        &mut rollback,
    )?;
    rollback.done();
    Ok(result)
}

/// A result naming only `link`, in the container.
pub fn single_interface_result(link: &Link, args: &Request<impl Sized>) -> v100::Result {
    v100::Result {
        cni_version: cni_types::version::CURRENT.into(),
        interfaces: vec![v100::Interface {
            name: link.name.clone(),
            mac: link.mac.clone(),
            mtu: i64::from(link.mtu),
            sandbox: args.netns.clone(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// L3: IPAM ADD (released again if the ADD fails), its addresses and routes on `link`
/// (`interface: 0`), gratuitous ARP / unsolicited NA on change when `announce`.
/// Returns IPAM's result with the link as its one interface.
#[allow(clippy::too_many_arguments)]
pub fn add_ipam_addresses<'a, C>(
    cx: &'a Context,
    args: &'a Request<C>,
    ipam_type: &'a str,
    netns: &NetNs,
    container: &mut Netlink,
    link: &Link,
    announce: bool,
    rollback: &mut Rollback<'a>,
) -> Result<v100::Result, Error> {
    let ipam = ipam_add(cx, ipam_type, args)?;
    rollback.push(move || {
        let _ = ipam_verb(cx, ipam_type, Command::Del, args);
    });
    if ipam.ips.is_empty() {
        return Err(Error::internal("IPAM plugin returned missing IP config"));
    }
    let mut result = single_interface_result(link, args);
    result.ips = ipam.ips;
    result.routes = ipam.routes;
    result.dns = ipam.dns;
    configure(cx, netns, container, link, &mut result, announce)?;
    Ok(result)
}

/// Puts `result`'s addresses and routes on `link` (each IP's `interface` becomes 0).
fn configure(
    cx: &Context,
    netns: &NetNs,
    container: &mut Netlink,
    link: &Link,
    result: &mut v100::Result,
    announce: bool,
) -> Result<(), Error> {
    for ip in &mut result.ips {
        ip.interface = Some(0);
    }
    if announce {
        // Errors ignored as upstream (IPv6 may be off).
        for name in [
            format!("net/ipv4/conf/{}/arp_notify", link.name),
            format!("net/ipv6/conf/{}/ndisc_notify", link.name),
        ] {
            let _ = cx.kernel.sysctl_write(Some(netns), &name, "1");
        }
    }
    Ok(configure_iface(cx.kernel, netns, container, link, result)?)
}

/// CHECK of a link in the container: IPAM's CHECK, prevResult's interface as a
/// link of `kind` with its MAC, `verify` given that link and the socket where the
/// master is (the host's; the container's with `linkInContainer`, or when there is
/// no master), then the link's addresses and routes.
pub fn check_child<C>(
    args: &Request<C>,
    cx: &Context,
    kind: LinkKind,
    link_in_container: bool,
    verify: impl FnOnce(&Link, &mut Netlink) -> Result<(), Error>,
) -> Result<(), Error> {
    ipam_only(args, cx, Command::Check)?;
    let prev = args.require_prev_result()?;
    let (mut container, link) = check_container_link(cx.kernel, args, &prev, Some(kind))?;
    match link_in_container {
        true => verify(&link, &mut container)?,
        false => verify(&link, &mut cx.kernel.host()?)?,
    }
    check_addresses_and_routes(&mut container, &link, &prev)
}

/// DEL in upstream's order: IPAM first, then the link (a missing link or netns is done).
pub fn del_ipam_then_link<C>(args: &Request<C>, cx: &Context) -> Result<(), Error> {
    if let Some(ipam_type) = args.ipam_type() {
        ipam_verb(cx, ipam_type, Command::Del, args)?;
    }
    match ContainerLink::find(cx.kernel, args)?.into_link() {
        Some(link) => link.delete(),
        None => Ok(()),
    }
}

/// STATUS, GC or CHECK's first step: IPAM's answer, or success without IPAM.
pub fn ipam_only<C>(args: &Request<C>, cx: &Context, command: Command) -> Result<(), Error> {
    match args.ipam_type() {
        Some(ipam_type) => ipam_verb(cx, ipam_type, command, args),
        None => Ok(()),
    }
}
