//! Interface-level recipes shared by the main plugins (upstream `pkg/ip` and
//! `pkg/ipam`): the veth pair with a random host name, deleting a link while
//! remembering its addresses, and ConfigureIface.

use std::io::Read;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use cni_types::result::v100;
use ipnet::IpNet;

use crate::{
    Kernel, KindSpec, Link, LinkSpec, NetError, NetNs, Netlink, OperState, Result, Route, Scope,
};

/// `veth` + 8 random hex digits, as upstream's `RandomVethName`.
pub fn random_veth_name() -> Result<String> {
    let mut bytes = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| NetError::io("failed to generate random veth name", e))?;
    Ok(format!("veth{:08x}", u32::from_be_bytes(bytes)))
}

/// The two ends of a new veth pair.
#[derive(Debug, Clone)]
pub struct VethPair {
    /// The end in the host namespace.
    pub host: Link,
    /// The end in the container namespace.
    pub container: Link,
}

/// Creates a veth pair (upstream `SetupVeth`): the container end is `ifname` (with
/// `mac` if given); the host end gets a random `vethXXXXXXXX` name, is up, enslaved
/// to `master` if given, and has `accept_ra=0`. One request from the host creates
/// both ends, each in its namespace. A clash on the random name is retried; a clash
/// on `ifname` is upstream's error.
pub struct VethRequest<'a> {
    pub ifname: &'a str,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    pub master: Option<u32>,
}

pub fn setup_veth(
    kernel: &Kernel,
    host: &mut Netlink,
    container: &mut Netlink,
    container_netns: &NetNs,
    request: &VethRequest,
) -> Result<VethPair> {
    let ifname = request.ifname;
    let mut tries = 0;
    let (host_name, created) = loop {
        let name = random_veth_name()?;
        let spec = LinkSpec {
            mtu: request.mtu,
            up: true,
            master: request.master,
            ..LinkSpec::new(
                &name,
                KindSpec::Veth {
                    peer: ifname,
                    peer_netns: Some(container_netns),
                    peer_mac: request.mac,
                },
            )
        };
        match host.create_link(&spec) {
            Ok(created) => break (name, created),
            Err(e) if e.already_exists() => {
                // Which name clashed? The container's own name is a hard error.
                if container.link_by_name(ifname)?.is_some() {
                    return Err(NetError::Other(format!(
                        "container veth name ({ifname:?}) peer provided ({name:?}) already exists"
                    )));
                }
                tries += 1;
                if tries >= 10 {
                    return Err(NetError::Other(format!(
                        "failed to find a unique veth name: {e}"
                    )));
                }
            }
            Err(e) => return Err(e),
        }
    };
    // Router advertisements on the host end would configure the host; errors are
    // ignored as upstream does (IPv6 may be disabled).
    let _ = kernel.sysctl_write(None, &format!("net/ipv6/conf/{host_name}/accept_ra"), "0");
    // The pair exists from here on: a failed lookup must not leave it behind.
    let looked_up = (|| {
        let host_link = match created {
            Some(link) => link,
            None => host.require_link(&host_name)?,
        };
        Ok(VethPair {
            host: host_link,
            container: container.require_link(ifname)?,
        })
    })();
    if looked_up.is_err()
        && let Ok(Some(link)) = host.link_by_name(&host_name)
    {
        let _ = host.delete_link(link.index);
    }
    looked_up
}

/// The global unicast addresses of link `index`: what upstream's `DelLinkByNameAddr`
/// reads before deleting a link, for the masquerade teardown.
pub fn global_addresses(netlink: &mut Netlink, index: u32) -> Result<Vec<IpNet>> {
    Ok(netlink
        .addresses(index)?
        .into_iter()
        .map(|a| a.address)
        .filter(is_global_unicast)
        .collect())
}

fn is_global_unicast(net: &IpNet) -> bool {
    match net.addr() {
        IpAddr::V4(ip) => {
            !(ip.is_loopback()
                || ip.is_link_local()
                || ip.is_multicast()
                || ip.is_broadcast()
                || ip.is_unspecified())
        }
        IpAddr::V6(ip) => {
            !(ip.is_loopback()
                || ip.is_multicast()
                || ip.is_unspecified()
                || ip.segments()[0] & 0xffc0 == 0xfe80)
        }
    }
}

/// ConfigureIface (upstream `pkg/ipam`): adds the result's addresses that belong to
/// `link` (by interface index), brings it up, waits for IPv6 DAD when a v6 gateway
/// exists, and adds the routes (a missing gateway defaults to the first gateway of
/// the same family). The sysctls are written inside `netns`. Upstream looks the link
/// up by name; the callers have just made it, so they pass it.
pub fn configure_iface(
    kernel: &Kernel,
    netns: &NetNs,
    netlink: &mut Netlink,
    link: &Link,
    result: &v100::Result,
) -> Result<()> {
    if result.interfaces.is_empty() {
        return Err(NetError::Other("no interfaces to configure".into()));
    }
    let ifname = link.name.as_str();
    let mut v4_gateway = None;
    let mut v6_gateway = None;
    let mut has_v6 = false;
    for ip in &result.ips {
        let Some(index) = ip.interface else { continue };
        let owner = usize::try_from(index)
            .ok()
            .and_then(|i| result.interfaces.get(i));
        if owner.is_none_or(|i| i.name != ifname) {
            return Err(NetError::Other(format!(
                "failed to add IP addr {} to {ifname:?}: invalid interface index",
                ip.address
            )));
        }
        let v6 = ip.address.addr().is_ipv6();
        if v6 && !has_v6 {
            has_v6 = true;
            enable_ipv6(kernel, netns, ifname)?;
        }
        netlink
            .add_address(link.index, ip.address, false)
            .map_err(|e| {
                NetError::Other(format!(
                    "failed to add IP addr {} to {ifname:?}: {e}",
                    ip.address
                ))
            })?;
        if let Some(gw) = ip.gateway {
            if gw.is_ipv4() {
                v4_gateway.get_or_insert(gw);
            } else {
                v6_gateway.get_or_insert(gw);
            }
        }
    }
    netlink
        .set_link_up(link.index, true)
        .map_err(|e| NetError::Other(format!("failed to set {ifname:?} UP: {e}")))?;
    if v6_gateway.is_some() {
        settle_addresses(netlink, link, Duration::from_secs(5))?;
    }
    for route in &result.routes {
        let gw = route.gw.or(if route.dst.addr().is_ipv4() {
            v4_gateway
        } else {
            v6_gateway
        });
        let mut kernel_route = Route::new(route.dst, gw, link.index);
        kernel_route.metric = u32::try_from(route.priority).unwrap_or(0);
        kernel_route.table = route.table.and_then(|t| u32::try_from(t).ok()).unwrap_or(0);
        kernel_route.scope =
            Scope::from_number(route.scope.and_then(|s| u8::try_from(s).ok()).unwrap_or(0));
        netlink.append_route(&kernel_route).map_err(|e| {
            NetError::Other(format!(
                "failed to add route '{{{} {}}}': {e}",
                route.dst,
                gw.map(|g| g.to_string()).unwrap_or_else(|| "<nil>".into())
            ))
        })?;
    }
    Ok(())
}

/// Turns IPv6 on for `lo` and `ifname` if it is off, and keeps addresses when the
/// link goes down (upstream does both before the first v6 address).
fn enable_ipv6(kernel: &Kernel, netns: &NetNs, ifname: &str) -> Result<()> {
    for dev in ["lo", ifname] {
        let name = format!("net/ipv6/conf/{dev}/disable_ipv6");
        if kernel
            .sysctl_read(Some(netns), &name)
            .is_ok_and(|v| v != "0")
        {
            kernel.sysctl_write(Some(netns), &name, "0")?;
        }
    }
    kernel.sysctl_write(
        Some(netns),
        &format!("net/ipv6/conf/{ifname}/keep_addr_on_down"),
        "1",
    )
}

/// Waits until no IPv6 address on `link` is tentative (upstream `SettleAddresses`).
pub fn settle_addresses(netlink: &mut Netlink, link: &Link, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let addresses = netlink.addresses(link.index)?;
        if let Some(failed) = addresses.iter().find(|a| a.dad_failed) {
            return Err(NetError::Other(format!(
                "link {} has address {} in DADFAILED state",
                link.name, failed.address
            )));
        }
        if !addresses.iter().any(|a| a.tentative) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            let up = netlink
                .link_by_index(link.index)?
                .is_some_and(|l| l.oper_state == OperState::Up);
            return if up {
                Err(NetError::Other(format!(
                    "link {} still has tentative addresses after {}s",
                    link.name,
                    timeout.as_secs()
                )))
            } else {
                Ok(())
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
