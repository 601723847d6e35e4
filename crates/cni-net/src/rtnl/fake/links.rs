//! Links in the fake kernel: lookups, changes in one request (rename, move, flags,
//! attributes, bridge-port flags), deletion with everything that depends on a link,
//! and bridge-port VLANs (creation: `create.rs`).

use netlink_packet_route::link::{
    AfSpecBridge, BridgeVlanInfoFlags, InfoPortData, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};

use super::super::addr::Address;
use super::super::link::{BridgePort, Link, LinkKind, OperState, format_mac, link_from_message};
use super::super::route::{Route, Scope};
use super::create::{insert, valid_name};
use super::handle::Answer;
use super::{EEXIST, EINVAL, ENODEV, ENOENT, EOPNOTSUPP, State};

/// A link as the kernel reports it: with its operational state.
pub(super) fn reported(state: &State, ns: u32, link: &Link) -> Link {
    let peer_up = || {
        state
            .ns(ns)
            .and_then(|n| n.peers.get(&link.index))
            .and_then(|(pns, pindex)| get(state, *pns, *pindex))
            .is_some_and(|p| p.up)
    };
    let oper_state = match (&link.kind, link.up) {
        (LinkKind::Device, _) if link.name == "lo" => OperState::Unknown,
        (_, false) => OperState::Down,
        (LinkKind::Veth, true) if !peer_up() => OperState::LowerLayerDown,
        (LinkKind::Dummy, true) => OperState::Unknown,
        (_, true) => OperState::Up,
    };
    Link {
        oper_state,
        ..link.clone()
    }
}

pub(super) fn get(state: &State, ns: u32, index: u32) -> Option<Link> {
    state
        .ns(ns)?
        .links
        .iter()
        .find(|l| l.index == index)
        .cloned()
}

pub(super) fn by_name(state: &State, ns: u32, name: &str) -> Option<Link> {
    state.ns(ns)?.links.iter().find(|l| l.name == name).cloned()
}

/// The link a request names, by index or by `IFLA_IFNAME`.
pub(super) fn find_link(state: &State, ns: u32, message: &LinkMessage) -> Result<u32, i32> {
    if message.header.index != 0 {
        return get(state, ns, message.header.index)
            .map(|l| l.index)
            .ok_or(ENODEV);
    }
    let name = link_from_message(message).name;
    by_name(state, ns, &name).map(|l| l.index).ok_or(ENODEV)
}

pub(super) fn netns_of(state: &State, message: &LinkMessage, default: u32) -> Result<u32, i32> {
    for attribute in &message.attributes {
        if let LinkAttribute::NetNsFd(fd) = attribute {
            let id = u32::try_from(*fd).map_err(|_| EINVAL)?;
            state.ns(id).ok_or(EINVAL)?;
            return Ok(id);
        }
    }
    Ok(default)
}

pub(super) fn set_master(state: &mut State, ns: u32, index: u32, master: Option<u32>) {
    let is_bridge = master
        .and_then(|m| get(state, ns, m))
        .is_some_and(|m| m.kind == LinkKind::Bridge);
    let is_vrf = |m: Option<u32>| {
        m.and_then(|m| get(state, ns, m))
            .is_some_and(|m| m.kind == LinkKind::Vrf)
    };
    let vrf_change = is_vrf(master) || is_vrf(get(state, ns, index).and_then(|l| l.master));
    if let Some(n) = state.ns_mut(ns)
        && let Some(l) = n.links.iter_mut().find(|l| l.index == index)
    {
        l.master = master;
        l.port = is_bridge.then(BridgePort::default);
        if !is_bridge {
            n.vlans.remove(&index);
        } else {
            // A new bridge port gets the default VLAN 1 as untagged PVID.
            n.vlans.entry(index).or_default().insert(1, (true, true));
        }
        if vrf_change {
            cycle_into_table(n, index);
        }
    }
}

/// Applies a change request to link `index` of namespace `ns`.
pub(super) fn change_link(
    state: &mut State,
    ns: u32,
    index: u32,
    m: &LinkMessage,
) -> Result<(), i32> {
    let current = get(state, ns, index).ok_or(ENODEV)?;
    let wanted = link_from_message(m);
    let has = |f: fn(&LinkAttribute) -> bool| m.attributes.iter().any(f);
    let new_name = has(|a| matches!(a, LinkAttribute::IfName(_)))
        .then(|| wanted.name.clone())
        .filter(|n| *n != current.name);
    // Checks first, so a refused change changes nothing.
    if let Some(name) = &new_name {
        valid_name(name)?;
    }
    let target = netns_of(state, m, ns)?;
    if target != ns {
        let name = new_name.clone().unwrap_or_else(|| current.name.clone());
        if by_name(state, target, &name).is_some() {
            return Err(EEXIST);
        }
    } else if let Some(name) = &new_name
        && by_name(state, ns, name).is_some()
    {
        // This kernel (6.18) renames up links too, so no EBUSY here.
        return Err(EEXIST);
    }
    let master = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    });
    if let Some(master) = master.filter(|m| *m != 0) {
        let link = get(state, target, master).ok_or(EINVAL)?;
        if !matches!(link.kind, LinkKind::Bridge | LinkKind::Vrf) {
            return Err(EOPNOTSUPP);
        }
    }
    let port = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::PortData(InfoPortData::BridgePort(_)) => Some(()),
            _ => None,
        }),
        _ => None,
    });
    if port.is_some() && current.port.is_none() && master.is_none() {
        return Err(EOPNOTSUPP);
    }

    let mut index = index;
    let mut ns = ns;
    if target != ns {
        index = move_link(state, ns, index, target);
        ns = target;
    }
    let was_up = current.up;
    if let Some(n) = state.ns_mut(ns)
        && let Some(l) = n.links.iter_mut().find(|l| l.index == index)
    {
        if let Some(name) = new_name {
            l.name = name;
        }
        for attribute in &m.attributes {
            match attribute {
                LinkAttribute::Mtu(mtu) => l.mtu = *mtu,
                LinkAttribute::Address(mac) => l.mac = format_mac(mac),
                LinkAttribute::TxQueueLen(q) => l.txqlen = *q,
                LinkAttribute::IfAlias(a) => l.alias = a.clone(),
                _ => {}
            }
        }
        let mask = m.header.change_mask;
        let flags = m.header.flags;
        if mask.contains(LinkFlags::Up) {
            l.up = flags.contains(LinkFlags::Up);
        }
        if mask.contains(LinkFlags::Promisc) {
            l.promisc = flags.contains(LinkFlags::Promisc);
        }
        if mask.contains(LinkFlags::Allmulti) {
            l.allmulti = flags.contains(LinkFlags::Allmulti);
        }
        if port.is_some() {
            l.port = wanted.port;
        }
    }
    if let Some(master) = master {
        set_master(state, ns, index, Some(master).filter(|m| *m != 0));
    }
    let up = get(state, ns, index).is_some_and(|l| l.up);
    if up && !was_up {
        link_went_up(state, ns, index);
    } else if !up
        && was_up
        && let Some(n) = state.ns_mut(ns)
    {
        n.routes.retain(|r| r.oif != Some(index));
    }
    Ok(())
}

/// Moves a link to another namespace as the kernel does: down, without addresses,
/// routes or master, keeping its index when it is free there.
fn move_link(state: &mut State, from: u32, index: u32, to: u32) -> u32 {
    let Some(n) = state.ns_mut(from) else {
        return 0;
    };
    let Some(at) = n.links.iter().position(|l| l.index == index) else {
        return 0;
    };
    let link = n.links.remove(at);
    n.addresses.retain(|a| a.index != index);
    n.routes.retain(|r| r.oif != Some(index));
    n.vlans.remove(&index);
    let peer = n.peers.remove(&index);
    let new_index = insert(
        state,
        to,
        Link {
            up: false,
            master: None,
            port: None,
            ..link
        },
    );
    if let Some((pns, pindex)) = peer {
        if let Some(n) = state.ns_mut(to) {
            n.peers.insert(new_index, (pns, pindex));
        }
        if let Some(p) = state.ns_mut(pns) {
            p.peers.insert(pindex, (to, new_index));
            if let Some(l) = p.links.iter_mut().find(|l| l.index == pindex) {
                l.parent = Some(new_index);
            }
        }
    }
    new_index
}

/// The kernel's connected routes for a link's addresses, made when it comes up;
/// `lo` gets its addresses the first time it does, as in a new namespace.
pub(super) fn link_went_up(state: &mut State, ns: u32, index: u32) {
    let is_lo = get(state, ns, index).is_some_and(|l| l.name == "lo");
    let Some(n) = state.ns_mut(ns) else { return };
    if is_lo && !n.addresses.iter().any(|a| a.index == index) {
        for address in ["127.0.0.1/8", "::1/128"] {
            if let Ok(address) = address.parse() {
                n.addresses.push(Address {
                    index,
                    address,
                    scope: Scope::Host,
                    tentative: false,
                    dad_failed: false,
                });
            }
        }
        return;
    }
    let addresses: Vec<Address> = n
        .addresses
        .iter()
        .filter(|a| a.index == index)
        .cloned()
        .collect();
    for a in addresses {
        add_connected_route(n, &a);
    }
}

/// The routing table of link `index`'s routes: its VRF's, or main.
fn table_of(n: &super::Namespace, index: u32) -> u32 {
    let master = n
        .links
        .iter()
        .find(|l| l.index == index)
        .and_then(|l| l.master);
    n.links
        .iter()
        .find(|l| Some(l.index) == master)
        .and_then(|m| match m.data {
            crate::rtnl::link::KindData::Vrf(table) => Some(table),
            _ => None,
        })
        .unwrap_or(super::super::route::TABLE_MAIN)
}

/// What the kernel does to a link that joins or leaves a VRF: it cycles the link
/// down and up, which drops its IPv6 addresses and every route through it but the
/// IPv4 connected ones, and those now live in the VRF's table (or main again).
fn cycle_into_table(n: &mut super::Namespace, index: u32) {
    n.addresses
        .retain(|a| !(a.index == index && a.address.addr().is_ipv6()));
    n.routes
        .retain(|r| !r.uses_link(index) || (r.kernel && r.dst.addr().is_ipv4()));
    let table = table_of(n, index);
    for route in n.routes.iter_mut().filter(|r| r.oif == Some(index)) {
        route.table = table;
    }
}

pub(super) fn add_connected_route(n: &mut super::Namespace, a: &Address) {
    let v4 = a.address.addr().is_ipv4();
    let host_len = if v4 { 32 } else { 128 };
    if a.address.prefix_len() == host_len {
        return;
    }
    let route = Route {
        dst: a.address.trunc(),
        gw: None,
        oif: Some(a.index),
        src: v4.then(|| a.address.addr()),
        table: table_of(n, a.index),
        metric: if v4 { 0 } else { 256 },
        scope: if v4 { Scope::Link } else { Scope::Universe },
        kernel: true,
        nexthops: Vec::new(),
    };
    if !n.routes.contains(&route) {
        n.routes.push(route);
    }
}

/// Deletes a link and everything that depends on it (its veth peer, the devices on
/// top of it, its addresses, routes, qdiscs, filters and VLANs).
pub(super) fn delete_link(state: &mut State, ns: u32, index: u32) {
    let Some(n) = state.ns_mut(ns) else { return };
    let Some(at) = n.links.iter().position(|l| l.index == index) else {
        return;
    };
    n.links.remove(at);
    n.addresses.retain(|a| a.index != index);
    n.routes.retain(|r| r.oif != Some(index));
    n.qdiscs.retain(|q| q.index != index);
    n.redirects.retain(|r| r.index != index && r.to != index);
    n.vlans.remove(&index);
    for l in n.links.iter_mut().filter(|l| l.master == Some(index)) {
        l.master = None;
        l.port = None;
    }
    let uppers: Vec<u32> = n
        .links
        .iter()
        .filter(|l| {
            matches!(
                l.kind,
                LinkKind::Macvlan | LinkKind::Ipvlan | LinkKind::Vlan
            ) && l.parent == Some(index)
        })
        .map(|l| l.index)
        .collect();
    let peer = n.peers.remove(&index);
    for upper in uppers {
        delete_link(state, ns, upper);
    }
    if let Some((pns, pindex)) = peer {
        if let Some(p) = state.ns_mut(pns) {
            p.peers.remove(&pindex);
        }
        delete_link(state, pns, pindex);
    }
}

pub(super) fn bridge_vlan(state: &mut State, ns: u32, m: &LinkMessage, add: bool) -> Answer {
    let port = get(state, ns, m.header.index).ok_or(ENODEV)?;
    if port.port.is_none() {
        return Err(EOPNOTSUPP);
    }
    let n = state.ns_mut(ns).ok_or(EINVAL)?;
    for attribute in &m.attributes {
        let LinkAttribute::AfSpecBridge(specs) = attribute else {
            continue;
        };
        for spec in specs {
            let AfSpecBridge::VlanInfo(info) = spec else {
                continue;
            };
            let vlans = n.vlans.entry(port.index).or_default();
            if add {
                let pvid = info.flags.contains(BridgeVlanInfoFlags::Pvid);
                if pvid {
                    for entry in vlans.values_mut() {
                        entry.0 = false;
                    }
                }
                vlans.insert(
                    info.vid,
                    (pvid, info.flags.contains(BridgeVlanInfoFlags::Untagged)),
                );
            } else if vlans.remove(&info.vid).is_none() {
                return Err(ENOENT);
            }
        }
    }
    Ok(vec![])
}
