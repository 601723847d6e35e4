//! Creating links in the fake kernel: every kind through RTM_NEWLINK (a veth pair
//! across namespaces, lower devices, masters), and devices made by other means (taps).

use netlink_packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo, LinkMessage};

use super::super::link::{
    Link, LinkKind, MAX_NAME_LEN, OperState, format_mac, link_from_message, link_message,
};
use super::handle::Answer;
use super::links::{by_name, change_link, get, link_went_up, netns_of, reported, set_master};
use super::{EBUSY, EEXIST, EINVAL, ENODEV, EOPNOTSUPP, State};

pub(super) fn new_link(state: &mut State, ns: u32, m: &LinkMessage, flags: u16) -> Answer {
    if m.header.index != 0 {
        return change_link(state, ns, m.header.index, m).map(|_| vec![]);
    }
    let wanted = link_from_message(m);
    if let Some(existing) = by_name(state, ns, &wanted.name) {
        if flags & NLM_F_EXCL != 0 {
            return Err(EEXIST);
        }
        return change_link(state, ns, existing.index, m).map(|_| vec![]);
    }
    if flags & NLM_F_CREATE == 0 {
        return Err(ENODEV);
    }
    let target = netns_of(state, m, ns)?;
    let created = create(state, ns, target, m, wanted)?;
    if flags & NLM_F_ECHO != 0 && target == ns {
        let link = get(state, ns, created).ok_or(ENODEV)?;
        return Ok(vec![RouteNetlinkMessage::NewLink(link_message(&reported(
            state, ns, &link,
        )))]);
    }
    Ok(vec![])
}

pub(super) fn valid_name(name: &str) -> Result<(), i32> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains(['/', ':']) {
        return Err(EINVAL);
    }
    Ok(())
}

fn new_mac(state: &mut State) -> String {
    state.next_mac += 1;
    let n = state.next_mac.to_be_bytes();
    format_mac(&[0x02, 0xfa, n[0], n[1], n[2], n[3]])
}

/// Creates the link `m` asks for in namespace `target` (its veth peer wherever the
/// peer's own attributes say); returns its index.
fn create(
    state: &mut State,
    ns: u32,
    target: u32,
    m: &LinkMessage,
    wanted: Link,
) -> Result<u32, i32> {
    valid_name(&wanted.name)?;
    if wanted.kind == LinkKind::Device {
        return Err(EINVAL);
    }
    if state.missing_kinds.contains(&format!("{:?}", wanted.kind)) {
        return Err(EOPNOTSUPP);
    }
    if by_name(state, target, &wanted.name).is_some() {
        return Err(EEXIST);
    }
    if matches!(
        wanted.kind,
        LinkKind::Macvlan | LinkKind::Ipvlan | LinkKind::Vlan
    ) {
        // The lower device lives in the socket's namespace.
        let parent = wanted.parent.ok_or(EINVAL)?;
        get(state, ns, parent).ok_or(ENODEV)?;
        // A passthru macvlan needs its lower device to itself.
        let uppers = state
            .namespaces
            .iter()
            .flatten()
            .flat_map(|n| &n.links)
            .filter(|l| l.kind == LinkKind::Macvlan && l.parent == Some(parent))
            .count();
        if wanted.kind == LinkKind::Macvlan
            && uppers > 0
            && wanted.data
                == crate::rtnl::link::KindData::Macvlan(crate::rtnl::link::MacvlanMode::Passthru)
        {
            return Err(EBUSY);
        }
    }
    if let Some(master) = wanted.master {
        let master = get(state, target, master).ok_or(EINVAL)?;
        if !matches!(master.kind, LinkKind::Bridge | LinkKind::Vrf) {
            return Err(EOPNOTSUPP);
        }
    }
    let peer = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) => Some(peer.clone()),
            _ => None,
        }),
        _ => None,
    });
    let peer = match (&wanted.kind, peer) {
        (LinkKind::Veth, Some(peer)) => {
            let peer_ns = netns_of(state, &peer, ns)?;
            let peer_link = link_from_message(&peer);
            valid_name(&peer_link.name)?;
            if by_name(state, peer_ns, &peer_link.name).is_some()
                || (peer_ns == target && peer_link.name == wanted.name)
            {
                return Err(EEXIST);
            }
            Some((peer_ns, peer_link))
        }
        (LinkKind::Veth, None) => return Err(EINVAL),
        _ => None,
    };
    let default_mtu = 1500;
    let mac = if wanted.mac.is_empty() {
        new_mac(state)
    } else {
        wanted.mac.clone()
    };
    let index = insert(
        state,
        target,
        Link {
            mtu: if wanted.mtu == 0 {
                default_mtu
            } else {
                wanted.mtu
            },
            mac,
            txqlen: if wanted.txqlen == 0 {
                1000
            } else {
                wanted.txqlen
            },
            port: None,
            ..wanted.clone()
        },
    );
    if let Some(master) = wanted.master {
        set_master(state, target, index, Some(master));
    }
    if let Some((peer_ns, peer_link)) = peer {
        let mac = if peer_link.mac.is_empty() {
            new_mac(state)
        } else {
            peer_link.mac.clone()
        };
        let peer_index = insert(
            state,
            peer_ns,
            Link {
                kind: LinkKind::Veth,
                mtu: if wanted.mtu == 0 {
                    default_mtu
                } else {
                    wanted.mtu
                },
                mac,
                txqlen: 1000,
                up: false,
                master: None,
                parent: Some(index),
                ..peer_link
            },
        );
        if let Some(n) = state.ns_mut(target) {
            n.peers.insert(index, (peer_ns, peer_index));
            if let Some(l) = n.links.iter_mut().find(|l| l.index == index) {
                l.parent = Some(peer_index);
            }
        }
        if let Some(n) = state.ns_mut(peer_ns) {
            n.peers.insert(peer_index, (target, index));
        }
    }
    if wanted.up {
        link_went_up(state, target, index);
    }
    Ok(index)
}

pub(super) fn insert(state: &mut State, ns: u32, mut link: Link) -> u32 {
    let Some(n) = state.ns_mut(ns) else { return 0 };
    let index = if link.index != 0 && !n.links.iter().any(|l| l.index == link.index) {
        link.index
    } else {
        n.next_index
    };
    n.next_index = n.next_index.max(index + 1);
    link.index = index;
    n.links.push(link);
    index
}

/// A device that appears by other means than rtnetlink (a tap from `/dev/net/tun`).
pub(super) fn add_device(
    state: &mut State,
    ns: u32,
    name: &str,
    kind: LinkKind,
) -> Result<(), i32> {
    valid_name(name)?;
    if by_name(state, ns, name).is_some() {
        return Err(EEXIST);
    }
    let mac = new_mac(state);
    insert(
        state,
        ns,
        Link {
            oper_state: OperState::Down,
            mac,
            mtu: 1500,
            txqlen: 1000,
            ..Link::named(name, kind)
        },
    );
    Ok(())
}
