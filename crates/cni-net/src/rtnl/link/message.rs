//! The messages of link requests and reports, built and read without a kernel.

use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort,
    InfoData, InfoIpVlan, InfoKind, InfoMacVlan, InfoPortData, InfoPortKind, InfoVeth, InfoVlan,
    InfoVrf, IpVlanMode, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};

use super::{
    BridgePort, IpvlanMode, KindData, KindSpec, Link, LinkChange, LinkKind, LinkSpec, MacvlanMode,
    OperState, check_name, format_mac, parse_mac, truncated,
};
use crate::{NetError, Result};

/// The RTM_NEWLINK message that creates `spec`. Pure: tested without a kernel.
pub(super) fn create_message(spec: &LinkSpec) -> Result<LinkMessage> {
    check_name(spec.name)?;
    let mut message = named(spec.name, spec.mtu);
    if let Some(netns) = spec.netns {
        message
            .attributes
            .push(LinkAttribute::NetNsFd(netns.netlink_fd()));
    }
    if let Some(mac) = spec.mac {
        message
            .attributes
            .push(LinkAttribute::Address(mac.to_vec()));
    }
    if spec.up {
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
    }
    if let Some(master) = spec.master {
        message.attributes.push(LinkAttribute::Controller(master));
    }
    if let Some(parent) = spec.parent {
        message.attributes.push(LinkAttribute::Link(parent));
    }
    if let Some(txqlen) = spec.txqlen {
        message.attributes.push(LinkAttribute::TxQueueLen(txqlen));
    }
    let data = match &spec.kind {
        KindSpec::Veth {
            peer,
            peer_netns,
            peer_mac,
        } => {
            check_name(peer)?;
            let mut peer_message = named(peer, spec.mtu);
            if let Some(netns) = peer_netns {
                peer_message
                    .attributes
                    .push(LinkAttribute::NetNsFd(netns.netlink_fd()));
            }
            if let Some(mac) = peer_mac {
                peer_message
                    .attributes
                    .push(LinkAttribute::Address(mac.to_vec()));
            }
            Some(InfoData::Veth(InfoVeth::Peer(peer_message)))
        }
        KindSpec::Bridge { vlan_filtering } => {
            vlan_filtering.then(|| InfoData::Bridge(vec![InfoBridge::VlanFiltering(true)]))
        }
        KindSpec::Macvlan { mode, bcqueuelen } => {
            let mut info = vec![InfoMacVlan::Mode(mode.wire())];
            if let Some(len) = bcqueuelen {
                info.push(InfoMacVlan::BcQueueLen(*len));
            }
            Some(InfoData::MacVlan(info))
        }
        KindSpec::Ipvlan { mode } => Some(InfoData::IpVlan(vec![InfoIpVlan::Mode(mode.wire())])),
        KindSpec::Vlan { id } => {
            if *id > 4094 {
                return Err(NetError::Invalid(format!("invalid VLAN ID {id}")));
            }
            Some(InfoData::Vlan(vec![InfoVlan::Id(*id)]))
        }
        KindSpec::Vrf { table } => Some(InfoData::Vrf(vec![InfoVrf::TableId(*table)])),
        KindSpec::Dummy | KindSpec::Ifb => None,
    };
    let mut info = vec![LinkInfo::Kind(
        spec.kind.kind().wire().unwrap_or(InfoKind::Dummy),
    )];
    info.extend(data.map(LinkInfo::Data));
    message.attributes.push(LinkAttribute::LinkInfo(info));
    Ok(message)
}

/// The message that applies `change` to link `index`. Pure: tested without a kernel.
pub(super) fn change_message(index: u32, change: &LinkChange) -> Result<LinkMessage> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    let flag = |on: Option<bool>, bit: LinkFlags, message: &mut LinkMessage| {
        if let Some(on) = on {
            message.header.change_mask |= bit;
            if on {
                message.header.flags |= bit;
            }
        }
    };
    flag(change.up, LinkFlags::Up, &mut message);
    flag(change.promisc, LinkFlags::Promisc, &mut message);
    flag(change.allmulti, LinkFlags::Allmulti, &mut message);
    let attributes = &mut message.attributes;
    if let Some(name) = change.name {
        check_name(name)?;
        attributes.push(LinkAttribute::IfName(name.to_string()));
    }
    if let Some(netns) = change.netns {
        attributes.push(LinkAttribute::NetNsFd(netns.netlink_fd()));
    }
    if let Some(mtu) = change.mtu {
        attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = change.mac {
        attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some(txqlen) = change.txqlen {
        attributes.push(LinkAttribute::TxQueueLen(txqlen));
    }
    if let Some(alias) = change.alias {
        if alias.len() > 255 {
            return Err(NetError::Invalid(format!(
                "interface alias {:?} is longer than 255 bytes",
                truncated(alias)
            )));
        }
        attributes.push(LinkAttribute::IfAlias(alias.to_string()));
    }
    if let Some(master) = change.master {
        attributes.push(LinkAttribute::Controller(master.unwrap_or(0)));
    }
    if let Some(port) = change.port {
        attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![
                InfoBridgePort::HairpinMode(port.hairpin),
                InfoBridgePort::Isolated(port.isolated),
            ])),
        ]));
    }
    Ok(message)
}

/// A new link's message: its name, and its MTU unless 0 (the kernel default).
fn named(name: &str, mtu: u32) -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    if mtu > 0 {
        message.attributes.push(LinkAttribute::Mtu(mtu));
    }
    message
}

/// An `AF_BRIDGE` link message carrying one VLAN entry for the port's master.
pub(super) fn bridge_vlan_message(index: u32, vid: u16, flags: BridgeVlanInfoFlags) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.interface_family = AddressFamily::Bridge;
    message.header.index = index;
    message.attributes.push(LinkAttribute::AfSpecBridge(vec![
        AfSpecBridge::Flags(BridgeFlag::Controller),
        AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid }),
    ]));
    message
}

/// A link from a kernel (or fake kernel) `RTM_NEWLINK` message.
pub(crate) fn link_from(message: RouteNetlinkMessage) -> Option<Link> {
    let RouteNetlinkMessage::NewLink(message) = message else {
        return None;
    };
    Some(link_from_message(&message))
}

/// Reads a link message: what the kernel reports, or what a request asks for.
pub(crate) fn link_from_message(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        up: message.header.flags.contains(LinkFlags::Up),
        promisc: message.header.flags.contains(LinkFlags::Promisc),
        allmulti: message.header.flags.contains(LinkFlags::Allmulti),
        ..Link::named("", LinkKind::Device)
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Address(bytes) => link.mac = format_mac(bytes),
            LinkAttribute::Controller(index) => link.master = Some(*index).filter(|i| *i != 0),
            LinkAttribute::Link(index) => link.parent = Some(*index),
            LinkAttribute::OperState(state) => link.oper_state = OperState::from_wire(*state),
            LinkAttribute::TxQueueLen(len) => link.txqlen = *len,
            LinkAttribute::IfAlias(alias) => link.alias = alias.clone(),
            LinkAttribute::LinkInfo(infos) => read_link_info(&mut link, infos),
            _ => {}
        }
    }
    link
}

fn read_link_info(link: &mut Link, infos: &[LinkInfo]) {
    for info in infos {
        match info {
            LinkInfo::Kind(kind) => link.kind = LinkKind::from_wire(kind),
            LinkInfo::PortData(InfoPortData::BridgePort(attributes)) => {
                let mut port = BridgePort::default();
                for attribute in attributes {
                    match attribute {
                        InfoBridgePort::HairpinMode(on) => port.hairpin = *on,
                        InfoBridgePort::Isolated(on) => port.isolated = *on,
                        _ => {}
                    }
                }
                link.port = Some(port);
            }
            LinkInfo::Data(InfoData::MacVlan(attributes)) => {
                if let Some(mode) = attributes.iter().find_map(|a| match a {
                    InfoMacVlan::Mode(mode) => MacvlanMode::from_wire(*mode),
                    _ => None,
                }) {
                    link.data = KindData::Macvlan(mode);
                }
            }
            LinkInfo::Data(InfoData::IpVlan(attributes)) => {
                if let Some(mode) = attributes.iter().find_map(|a| match a {
                    InfoIpVlan::Mode(mode) => IpvlanMode::from_wire(*mode),
                    _ => None,
                }) {
                    link.data = KindData::Ipvlan(mode);
                }
            }
            LinkInfo::Data(InfoData::Vlan(attributes)) => {
                if let Some(id) = attributes.iter().find_map(|a| match a {
                    InfoVlan::Id(id) => Some(*id),
                    _ => None,
                }) {
                    link.data = KindData::Vlan(id);
                }
            }
            LinkInfo::Data(InfoData::Vrf(attributes)) => {
                if let Some(table) = attributes.iter().find_map(|a| match a {
                    InfoVrf::TableId(table) => Some(*table),
                    _ => None,
                }) {
                    link.data = KindData::Vrf(table);
                }
            }
            _ => {}
        }
    }
}

/// The `RTM_NEWLINK` message describing `link`, as the kernel reports one (the fake
/// kernel's replies).
pub(crate) fn link_message(link: &Link) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = link.index;
    if link.up {
        message.header.flags |= LinkFlags::Up;
    }
    if link.promisc {
        message.header.flags |= LinkFlags::Promisc;
    }
    if link.allmulti {
        message.header.flags |= LinkFlags::Allmulti;
    }
    let attributes = &mut message.attributes;
    attributes.push(LinkAttribute::IfName(link.name.clone()));
    attributes.push(LinkAttribute::Mtu(link.mtu));
    attributes.push(LinkAttribute::TxQueueLen(link.txqlen));
    attributes.push(LinkAttribute::OperState(link.oper_state.wire()));
    if let Ok(mac) = parse_mac(&link.mac) {
        attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some(master) = link.master {
        attributes.push(LinkAttribute::Controller(master));
    }
    if let Some(parent) = link.parent {
        attributes.push(LinkAttribute::Link(parent));
    }
    if !link.alias.is_empty() {
        attributes.push(LinkAttribute::IfAlias(link.alias.clone()));
    }
    let mut info = Vec::new();
    if let Some(kind) = link.kind.wire() {
        info.push(LinkInfo::Kind(kind));
    }
    match link.data {
        KindData::None => {}
        KindData::Macvlan(mode) => {
            info.push(LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                mode.wire(),
            )])))
        }
        KindData::Ipvlan(mode) => {
            info.push(LinkInfo::Data(InfoData::IpVlan(vec![InfoIpVlan::Mode(
                mode.wire(),
            )])))
        }
        KindData::Vlan(id) => info.push(LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(id)]))),
        KindData::Vrf(table) => {
            info.push(LinkInfo::Data(InfoData::Vrf(vec![InfoVrf::TableId(table)])))
        }
    }
    if let Some(port) = link.port {
        info.push(LinkInfo::PortKind(InfoPortKind::Bridge));
        info.push(LinkInfo::PortData(InfoPortData::BridgePort(vec![
            InfoBridgePort::HairpinMode(port.hairpin),
            InfoBridgePort::Isolated(port.isolated),
        ])));
    }
    if !info.is_empty() {
        attributes.push(LinkAttribute::LinkInfo(info));
    }
    message
}

impl MacvlanMode {
    fn wire(self) -> MacVlanMode {
        match self {
            MacvlanMode::Private => MacVlanMode::Private,
            MacvlanMode::Vepa => MacVlanMode::Vepa,
            MacvlanMode::Bridge => MacVlanMode::Bridge,
            MacvlanMode::Passthru => MacVlanMode::Passthrough,
            MacvlanMode::Source => MacVlanMode::Source,
        }
    }

    fn from_wire(mode: MacVlanMode) -> Option<MacvlanMode> {
        Some(match mode {
            MacVlanMode::Private => MacvlanMode::Private,
            MacVlanMode::Vepa => MacvlanMode::Vepa,
            MacVlanMode::Bridge => MacvlanMode::Bridge,
            MacVlanMode::Passthrough => MacvlanMode::Passthru,
            MacVlanMode::Source => MacvlanMode::Source,
            _ => return None,
        })
    }
}

impl IpvlanMode {
    fn wire(self) -> IpVlanMode {
        match self {
            IpvlanMode::L2 => IpVlanMode::L2,
            IpvlanMode::L3 => IpVlanMode::L3,
            IpvlanMode::L3s => IpVlanMode::L3S,
        }
    }

    fn from_wire(mode: IpVlanMode) -> Option<IpvlanMode> {
        Some(match mode {
            IpVlanMode::L2 => IpvlanMode::L2,
            IpVlanMode::L3 => IpvlanMode::L3,
            IpVlanMode::L3S => IpvlanMode::L3s,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the fake kernel reports of a link's kind data reads back the same.
    #[test]
    fn kind_data_survives_a_report() {
        for data in [
            KindData::Macvlan(MacvlanMode::Passthru),
            KindData::Ipvlan(IpvlanMode::L3),
            KindData::Vlan(100),
        ] {
            let link = Link {
                index: 4,
                parent: Some(2),
                mtu: 1500,
                data,
                ..Link::named("x", LinkKind::Vlan)
            };
            assert_eq!(link_from_message(&link_message(&link)).data, data);
        }
    }
}
