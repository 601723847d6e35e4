//! The host side of a bridge attachment: the bridge itself, the port flags and VLANs
//! of the host veth, the gateway address, and the container sysctls.

use std::net::IpAddr;
use std::time::Duration;

use cni_net::{
    BridgePort, Kernel, KindSpec, Link, LinkChange, LinkKind, LinkSpec, NetNs, Netlink, OperState,
};
use cni_types::net::IpNet;
use cni_types::result::{Route, v100};
use cni_types::{Context as _, Error};

use super::Conf;
use crate::pkg::Rollback;

/// Creates the bridge unless it exists (a concurrent ADD may create it first: that
/// is fine), and brings it up. An existing bridge that is already up and promiscuous
/// as configured costs one lookup: the common case, every ADD after the first. A
/// bridge this call created is removed again if the ADD fails while it has no ports.
pub(super) fn ensure_bridge<'a>(
    kernel: &'a Kernel,
    host: &mut Netlink,
    conf: &Conf,
    rollback: &mut Rollback<'a>,
) -> Result<Link, Error> {
    let mut link = match host.link_by_name(&conf.bridge)? {
        Some(link) => link,
        None => {
            let spec = LinkSpec {
                mtu: conf.mtu(),
                ..LinkSpec::new(
                    &conf.bridge,
                    KindSpec::Bridge {
                        vlan_filtering: conf.vlan != 0 || !conf.vlan_trunk.is_empty(),
                    },
                )
            };
            match host.create_link(&spec) {
                Err(e) if !e.already_exists() => {
                    return Err(e).context(format!("could not add {:?}", conf.bridge));
                }
                Err(_) => {}
                Ok(_) => {
                    let name = conf.bridge.clone();
                    rollback.push(move || remove_if_unused(kernel, &name));
                }
            }
            host.require_link(&conf.bridge)?
        }
    };
    if link.kind != LinkKind::Bridge {
        return Err(Error::internal(format!(
            "{:?} already exists but is not a bridge",
            conf.bridge
        )));
    }
    let change = LinkChange {
        promisc: (conf.promisc_mode && !link.promisc).then_some(true),
        up: (!link.up).then_some(true),
        ..Default::default()
    };
    if change.promisc.is_some() || change.up.is_some() {
        host.change_link(link.index, &change)?;
        link.promisc |= conf.promisc_mode;
        link.up = true;
    }
    // We own the routes of this interface; written every time, as upstream does.
    let _ = kernel.sysctl_write(
        None,
        &format!("net/ipv6/conf/{}/accept_ra", conf.bridge),
        "0",
    );
    Ok(link)
}

/// Rollback of a bridge a failed ADD created: deleted unless a concurrent ADD has
/// attached a port to it meanwhile.
fn remove_if_unused(kernel: &Kernel, name: &str) {
    let Ok(mut host) = kernel.host() else { return };
    let Ok(Some(bridge)) = host.link_by_name(name) else {
        return;
    };
    let in_use = host
        .links()
        .map(|links| links.iter().any(|l| l.master == Some(bridge.index)))
        .unwrap_or(true);
    if !in_use {
        let _ = host.delete_link(bridge.index);
    }
}

/// Sets the host veth's port flags and VLANs (upstream step 4; the veth was
/// enslaved when it was created). Hairpin and isolation are off on a new port, so
/// they cost a request only when configured on.
pub(super) fn attach_to_bridge(
    host: &mut Netlink,
    port: &Link,
    conf: &Conf,
    trunk: &[u16],
) -> Result<(), Error> {
    if conf.hairpin_mode || conf.port_isolation {
        let flags = BridgePort {
            hairpin: conf.hairpin_mode,
            isolated: conf.port_isolation,
        };
        let change = LinkChange {
            port: Some(flags),
            ..Default::default()
        };
        host.change_link(port.index, &change)
            .context(format!("failed to setup hairpin mode for {}", port.name))?;
    }
    Ok(apply_vlans(host, port.index, conf, trunk)?)
}

/// The VLAN entries of a bridge port: drop the default VID 1 (unless
/// preserveDefaultVlan), `vlan` as PVID untagged, each trunk VID tagged; a trunk
/// without `vlan` keeps VID 1 as PVID untagged.
pub(super) fn apply_vlans(
    host: &mut Netlink,
    index: u32,
    conf: &Conf,
    trunk: &[u16],
) -> cni_net::Result<()> {
    if conf.vlan == 0 && trunk.is_empty() {
        return Ok(());
    }
    if !conf.preserve_default_vlan {
        host.bridge_vlan_del(index, 1)?;
    }
    if let Ok(vid) = u16::try_from(conf.vlan)
        && vid != 0
    {
        host.bridge_vlan_add(index, vid, true, true)?;
    }
    for vid in trunk {
        host.bridge_vlan_add(index, *vid, false, false)?;
    }
    if conf.vlan == 0 {
        host.bridge_vlan_add(index, 1, true, true)?;
    }
    Ok(())
}

/// Where the gateway address goes: the bridge, or with a VLAN a host-side veth
/// `<bridge>.<vlan>` attached to the bridge with that VLAN.
pub(super) fn gateway_link(host: &mut Netlink, bridge: &Link, conf: &Conf) -> Result<Link, Error> {
    if conf.vlan == 0 {
        return Ok(bridge.clone());
    }
    let name = format!("{}.{}", conf.bridge, conf.vlan);
    if let Some(link) = host.link_by_name(&name)? {
        return Ok(link);
    }
    let peer = cni_net::iface::random_veth_name()?;
    let spec = LinkSpec {
        mtu: conf.mtu(),
        up: true,
        ..LinkSpec::new(
            &name,
            KindSpec::Veth {
                peer: &peer,
                peer_netns: None,
                peer_mac: None,
            },
        )
    };
    match host.create_link(&spec) {
        Err(e) if !e.already_exists() => return Err(e.into()),
        _ => {}
    }
    let link = host.require_link(&name)?;
    let peer_link = host.require_link(&peer)?;
    let enslave = LinkChange {
        master: Some(Some(bridge.index)),
        up: Some(true),
        ..Default::default()
    };
    host.change_link(peer_link.index, &enslave)?;
    apply_vlans(host, peer_link.index, conf, &[])?;
    Ok(link)
}

/// Puts `gateway` on `link` (upstream `ensureAddr`): an identical address is fine;
/// another IPv4 address, or an overlapping IPv6 one, is an error unless
/// forceAddress. Then pins the bridge MAC so it stops following its ports.
pub(super) fn ensure_address(
    host: &mut Netlink,
    link: &Link,
    gateway: IpNet,
    force: bool,
) -> Result<(), Error> {
    let v6 = gateway.addr().is_ipv6();
    for existing in host.addresses(link.index)? {
        let address = existing.address;
        if address.addr().is_ipv6() != v6 {
            continue;
        }
        if address == gateway {
            return Ok(());
        }
        if !v6 || address.contains(&gateway.addr()) || gateway.contains(&address.addr()) {
            if !force {
                return Err(Error::internal(format!(
                    "{:?} already has an IP address different from {gateway}",
                    link.name
                )));
            }
            host.del_address(link.index, address)?;
        }
    }
    match host.add_address(link.index, gateway, false) {
        Err(e) if !e.already_exists() => {
            return Err(e).context(format!("could not add IP address to {:?}", link.name));
        }
        _ => {}
    }
    let current = host.require_link(&link.name)?;
    if let Ok(mac) = cni_net::parse_mac(&current.mac) {
        let pin = LinkChange {
            mac: Some(mac),
            ..Default::default()
        };
        host.change_link(current.index, &pin)?;
    }
    Ok(())
}

/// The first host address of a subnet: upstream's default gateway.
pub(super) fn first_host(address: &IpNet) -> IpAddr {
    match address.network() {
        IpAddr::V4(n) => IpAddr::V4((u32::from(n).wrapping_add(1)).into()),
        IpAddr::V6(n) => IpAddr::V6((u128::from(n).wrapping_add(1)).into()),
    }
}

/// isDefaultGateway: a default route per family via its first gateway, unless IPAM
/// already gave one.
pub(super) fn add_default_routes(result: &mut v100::Result) {
    for v6 in [false, true] {
        let has_default = result
            .routes
            .iter()
            .any(|r| r.dst.prefix_len() == 0 && r.dst.addr().is_ipv6() == v6);
        let gateway = result
            .ips
            .iter()
            .filter(|ip| ip.address.addr().is_ipv6() == v6)
            .find_map(|ip| ip.gateway);
        if let (false, Some(gw)) = (has_default, gateway) {
            let dst = if v6 { "::/0" } else { "0.0.0.0/0" };
            if let Ok(dst) = dst.parse() {
                result.routes.push(Route::new(dst, Some(gw)));
            }
        }
    }
}

/// In the container: IPv6 DAD as `enabledad` says, and gratuitous ARP on changes.
/// Errors are ignored as upstream does (IPv6 may be off).
pub(super) fn container_sysctls(kernel: &Kernel, netns: &NetNs, ifname: &str, enabledad: bool) {
    let write = |name: String, value: &str| {
        let _ = kernel.sysctl_write(Some(netns), &name, value);
    };
    if enabledad {
        write(format!("net/ipv6/conf/{ifname}/enhanced_dad"), "1");
        write(format!("net/ipv6/conf/{ifname}/accept_dad"), "1");
    } else {
        write(format!("net/ipv6/conf/{ifname}/accept_dad"), "0");
    }
    write(format!("net/ipv4/conf/{ifname}/arp_notify"), "1");
}

/// Waits for the host veth to be operationally up (upstream #468), sleeping 0, 50,
/// 500, 1000 and 1000 ms between looks.
pub(super) fn wait_port_up(host: &mut Netlink, port: &Link) -> Result<(), Error> {
    let mut state = OperState::Unknown;
    for pause in [0, 50, 500, 1000, 1000] {
        std::thread::sleep(Duration::from_millis(pause));
        state = host
            .link_by_index(port.index)?
            .map(|l| l.oper_state)
            .unwrap_or_default();
        if state == OperState::Up {
            return Ok(());
        }
    }
    Err(Error::internal(format!(
        "bridge port in error state: {state}"
    )))
}
