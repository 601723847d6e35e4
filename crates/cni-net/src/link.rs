//! Link operations: veth pairs, bridges, masters, and the per-link attributes the
//! plugins set (MTU, MAC, promisc, bridge-port flags, bridge VLANs).

use std::os::fd::AsRawFd;

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort,
    InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::netlink::{BridgePort, Link, link_from};
use crate::{NetError, NetNs, Netlink, Result};

/// errno values callers branch on.
pub const EEXIST: i32 = 17;
pub const ENODEV: i32 = 19;

/// A veth pair to create with [`Netlink::create_veth`].
#[derive(Default)]
pub struct NewVeth<'a> {
    /// The end created in the socket's namespace.
    pub name: &'a str,
    /// The other end, created directly in `peer_netns` (here when `None`), so it
    /// never appears in the wrong namespace.
    pub peer: &'a str,
    pub peer_netns: Option<&'a NetNs>,
    /// A fixed hardware address for the peer; the kernel picks random ones otherwise.
    pub peer_mac: Option<[u8; 6]>,
    /// 0 keeps the kernel default.
    pub mtu: u32,
    /// Brings `name` up and enslaves it to `master` as part of the creation, as
    /// `ip link add NAME master BR up type veth peer ...` does: no separate requests,
    /// and a failure leaves no half-made pair.
    pub up: bool,
    pub master: Option<u32>,
}

/// Parses a MAC in any of the forms Go's `net.ParseMAC` accepts for 48-bit
/// addresses (`aa:bb:..`, `aa-bb-..`, `aabb.ccdd.eeff`).
pub fn parse_mac(text: &str) -> std::result::Result<[u8; 6], String> {
    let invalid = || format!("address {text}: invalid MAC address");
    let hex: String = if text.contains('.') {
        let groups: Vec<&str> = text.split('.').collect();
        if groups.len() != 3 || groups.iter().any(|g| g.len() != 4) {
            return Err(invalid());
        }
        groups.concat()
    } else {
        let groups: Vec<&str> = text.split([':', '-']).collect();
        if groups.len() != 6 || groups.iter().any(|g| g.len() != 2) {
            return Err(invalid());
        }
        groups.concat()
    };
    let mut mac = [0u8; 6];
    for (i, byte) in mac.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(invalid)?, 16)
            .map_err(|_| invalid())?;
    }
    Ok(mac)
}

pub(crate) fn read_link_info(link: &mut Link, infos: Vec<LinkInfo>) {
    for info in infos {
        match info {
            LinkInfo::Kind(kind) => link.kind = kind.to_string(),
            LinkInfo::PortData(InfoPortData::BridgePort(attributes)) => {
                let mut port = BridgePort::default();
                for attribute in attributes {
                    match attribute {
                        InfoBridgePort::HairpinMode(on) => port.hairpin = on,
                        InfoBridgePort::Isolated(on) => port.isolated = on,
                        _ => {}
                    }
                }
                link.port = Some(port);
            }
            _ => {}
        }
    }
}

impl Netlink {
    /// The link with index `index`, or `None` if there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        match self.request(
            RouteNetlinkMessage::GetLink(message),
            0,
            &format!("get link {index}"),
        ) {
            Ok(replies) => Ok(replies.into_iter().find_map(link_from)),
            Err(e) if e.errno() == Some(ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The link named `name`, or an error naming it (upstream's "Link not found").
    pub fn require_link(&mut self, name: &str) -> Result<Link> {
        self.link_by_name(name)?
            .ok_or_else(|| NetError::LinkNotFound(name.to_string()))
    }

    /// Creates a veth pair in one request (see [`NewVeth`]). Returns the end made in
    /// this namespace as the kernel echoes it (newer kernels answer `NLM_F_ECHO` on
    /// link creation; this one, 6.18, does), which saves a lookup; `None` from
    /// kernels that do not. The echo is sent before the link is enslaved, so its `master` is
    /// filled in from the request.
    pub fn create_veth(&mut self, veth: &NewVeth) -> Result<Option<Link>> {
        let mut peer_message = named(veth.peer, veth.mtu);
        if let Some(netns) = veth.peer_netns {
            peer_message
                .attributes
                .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        }
        if let Some(mac) = veth.peer_mac {
            peer_message
                .attributes
                .push(LinkAttribute::Address(mac.to_vec()));
        }
        let mut message = named(veth.name, veth.mtu);
        if veth.up {
            message.header.flags = LinkFlags::Up;
            message.header.change_mask = LinkFlags::Up;
        }
        if let Some(master) = veth.master {
            message.attributes.push(LinkAttribute::Controller(master));
        }
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]));
        let replies = self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
            &format!("create veth {:?} peer {:?}", veth.name, veth.peer),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(link_from)
            .find(|link| link.name == veth.name)
            .map(|link| Link {
                master: veth.master,
                ..link
            }))
    }

    /// Creates a bridge (down). `mtu` 0 keeps the kernel default.
    pub fn create_bridge(&mut self, name: &str, mtu: u32, vlan_filtering: bool) -> Result<()> {
        let mut message = named(name, mtu);
        let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
        if vlan_filtering {
            info.push(LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::VlanFiltering(true),
            ])));
        }
        message.attributes.push(LinkAttribute::LinkInfo(info));
        self.create(message, &format!("create bridge {name:?}"))
    }

    fn create(&mut self, message: LinkMessage, op: &str) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            op,
        )
        .map(drop)
    }

    /// Deletes link `index`.
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.request(
            RouteNetlinkMessage::DelLink(message),
            NLM_F_ACK,
            &format!("delete link {index}"),
        )
        .map(drop)
    }

    /// Enslaves link `index` to `master`, or frees it with `None`.
    pub fn set_master(&mut self, index: u32, master: Option<u32>) -> Result<()> {
        self.set(
            index,
            vec![LinkAttribute::Controller(master.unwrap_or(0))],
            &format!("set master of link {index} to {master:?}"),
        )
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set(
            index,
            vec![LinkAttribute::Mtu(mtu)],
            &format!("set mtu {mtu} on link {index}"),
        )
    }

    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.set(
            index,
            vec![LinkAttribute::Address(mac.to_vec())],
            &format!("set hardware address on link {index}"),
        )
    }

    /// Moves link `index` into `netns`.
    pub fn set_netns(&mut self, index: u32, netns: &NetNs) -> Result<()> {
        self.set(
            index,
            vec![LinkAttribute::NetNsFd(netns.as_raw_fd())],
            &format!("move link {index} to {:?}", netns.path()),
        )
    }

    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = if on {
            LinkFlags::Promisc
        } else {
            LinkFlags::empty()
        };
        message.header.change_mask = LinkFlags::Promisc;
        self.request(
            RouteNetlinkMessage::SetLink(message),
            NLM_F_ACK,
            &format!("set promisc {on} on link {index}"),
        )
        .map(drop)
    }

    /// Sets the hairpin and isolated flags of bridge port `index`, as
    /// `ip link set dev X type bridge_slave hairpin on isolated on`.
    pub fn set_bridge_port(&mut self, index: u32, port: BridgePort) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![
                InfoBridgePort::HairpinMode(port.hairpin),
                InfoBridgePort::Isolated(port.isolated),
            ])),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK,
            &format!("set bridge port flags on link {index}"),
        )
        .map(drop)
    }

    /// Adds VLAN `vid` to bridge port `index` (`bridge vlan add dev X vid N [pvid]
    /// [untagged] master`).
    pub fn bridge_vlan_add(
        &mut self,
        index: u32,
        vid: u16,
        pvid: bool,
        untagged: bool,
    ) -> Result<()> {
        let mut flags = BridgeVlanInfoFlags::empty();
        if pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        let message = bridge_vlan_message(index, vid, flags);
        self.request(
            RouteNetlinkMessage::SetLink(message),
            NLM_F_ACK,
            &format!("add vlan {vid} to bridge port {index}"),
        )
        .map(drop)
    }

    /// Removes VLAN `vid` from bridge port `index` (`bridge vlan del ... master`).
    pub fn bridge_vlan_del(&mut self, index: u32, vid: u16) -> Result<()> {
        let message = bridge_vlan_message(index, vid, BridgeVlanInfoFlags::empty());
        self.request(
            RouteNetlinkMessage::DelLink(message),
            NLM_F_ACK,
            &format!("delete vlan {vid} from bridge port {index}"),
        )
        .map(drop)
    }

    fn set(&mut self, index: u32, attributes: Vec<LinkAttribute>, op: &str) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes = attributes;
        self.request(RouteNetlinkMessage::SetLink(message), NLM_F_ACK, op)
            .map(drop)
    }
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
fn bridge_vlan_message(index: u32, vid: u16, flags: BridgeVlanInfoFlags) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.interface_family = AddressFamily::Bridge;
    message.header.index = index;
    message.attributes.push(LinkAttribute::AfSpecBridge(vec![
        AfSpecBridge::Flags(BridgeFlag::Controller),
        AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid }),
    ]));
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_as_go_does() {
        assert_eq!(
            parse_mac("0a:58:0A:01:02:03"),
            Ok([0x0a, 0x58, 0x0a, 1, 2, 3])
        );
        assert_eq!(
            parse_mac("0a-58-0a-01-02-03"),
            Ok([0x0a, 0x58, 0x0a, 1, 2, 3])
        );
        assert_eq!(parse_mac("0a58.0a01.0203"), Ok([0x0a, 0x58, 0x0a, 1, 2, 3]));
        for bad in [
            "",
            "0a:58:0a:01:02",
            "zz:58:0a:01:02:03",
            "0a:58:0a:01:02:03:04",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vlan_requests_go_to_the_fake_kernel_as_af_bridge_messages() {
        let mut netlink = Netlink::fake();
        netlink.bridge_vlan_add(7, 100, true, true).expect("add");
        netlink.bridge_vlan_del(7, 1).expect("del");
        let sent = netlink.sent();
        assert_eq!(sent.len(), 2);
        let RouteNetlinkMessage::SetLink(add) = &sent[0] else {
            panic!("{:?}", sent[0])
        };
        assert_eq!(add.header.interface_family, AddressFamily::Bridge);
        assert_eq!(add.header.index, 7);
        assert_eq!(
            add.attributes,
            vec![LinkAttribute::AfSpecBridge(vec![
                AfSpecBridge::Flags(BridgeFlag::Controller),
                AfSpecBridge::VlanInfo(BridgeVlanInfo {
                    flags: BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged,
                    vid: 100
                }),
            ])]
        );
        assert!(matches!(&sent[1], RouteNetlinkMessage::DelLink(m) if m.header.index == 7));
    }
}
