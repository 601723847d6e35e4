//! Links: one [`Netlink::create_link`] for every kind the plugins make, one
//! [`LinkChange`] sent as a single request for every attribute they change, lookups,
//! and bridge-port VLANs.

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    BridgeVlanInfoFlags, InfoKind, LinkAttribute, LinkMessage, State,
};

use crate::{NetError, NetNs, Netlink, Result};

mod message;

use message::{bridge_vlan_message, change_message, create_message};
pub(crate) use message::{link_from, link_from_message, link_message};

/// Linux limits interface names to 15 bytes (IFNAMSIZ - 1).
pub const MAX_NAME_LEN: usize = 15;

/// What kind of device a link is (`IFLA_INFO_KIND`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// No kind: physical devices and `lo`.
    Device,
    Veth,
    Bridge,
    Macvlan,
    Ipvlan,
    Vlan,
    Dummy,
    Vrf,
    Ifb,
    Tun,
    Other(String),
}

impl LinkKind {
    pub(super) fn from_wire(kind: &InfoKind) -> LinkKind {
        match kind {
            InfoKind::Veth => LinkKind::Veth,
            InfoKind::Bridge => LinkKind::Bridge,
            InfoKind::MacVlan => LinkKind::Macvlan,
            InfoKind::IpVlan => LinkKind::Ipvlan,
            InfoKind::Vlan => LinkKind::Vlan,
            InfoKind::Dummy => LinkKind::Dummy,
            InfoKind::Vrf => LinkKind::Vrf,
            InfoKind::Ifb => LinkKind::Ifb,
            InfoKind::Tun => LinkKind::Tun,
            other => LinkKind::Other(other.to_string()),
        }
    }

    pub(super) fn wire(&self) -> Option<InfoKind> {
        Some(match self {
            LinkKind::Device => return None,
            LinkKind::Veth => InfoKind::Veth,
            LinkKind::Bridge => InfoKind::Bridge,
            LinkKind::Macvlan => InfoKind::MacVlan,
            LinkKind::Ipvlan => InfoKind::IpVlan,
            LinkKind::Vlan => InfoKind::Vlan,
            LinkKind::Dummy => InfoKind::Dummy,
            LinkKind::Vrf => InfoKind::Vrf,
            LinkKind::Ifb => InfoKind::Ifb,
            LinkKind::Tun => InfoKind::Tun,
            LinkKind::Other(name) => InfoKind::Other(name.clone()),
        })
    }

    /// The kernel module that provides this kind, for "not supported" messages.
    pub fn module(&self) -> String {
        match self {
            LinkKind::Vlan => "8021q".into(),
            LinkKind::Device => "none".into(),
            other => other.wire().map(|k| k.to_string()).unwrap_or_default(),
        }
    }
}

/// Operational state (`IFLA_OPERSTATE`, RFC 2863), as `ip` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OperState {
    #[default]
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
}

impl OperState {
    pub(super) fn from_wire(state: State) -> OperState {
        match state {
            State::NotPresent => OperState::NotPresent,
            State::Down => OperState::Down,
            State::LowerLayerDown => OperState::LowerLayerDown,
            State::Testing => OperState::Testing,
            State::Dormant => OperState::Dormant,
            State::Up => OperState::Up,
            _ => OperState::Unknown,
        }
    }

    pub(crate) fn wire(self) -> State {
        match self {
            OperState::Unknown => State::Unknown,
            OperState::NotPresent => State::NotPresent,
            OperState::Down => State::Down,
            OperState::LowerLayerDown => State::LowerLayerDown,
            OperState::Testing => State::Testing,
            OperState::Dormant => State::Dormant,
            OperState::Up => State::Up,
        }
    }
}

impl std::fmt::Display for OperState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format!("{self:?}").to_lowercase())
    }
}

/// A network interface as plugins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    pub oper_state: OperState,
    /// `aa:bb:cc:dd:ee:ff`, empty when the link has no hardware address.
    pub mac: String,
    pub mtu: u32,
    /// The bridge (or VRF) this link is enslaved to.
    pub master: Option<u32>,
    /// `IFLA_LINK`: a veth's peer, a macvlan's/vlan's parent (an index in the other
    /// end's namespace for a veth).
    pub parent: Option<u32>,
    pub promisc: bool,
    pub allmulti: bool,
    pub txqlen: u32,
    /// `IFLA_IFALIAS`, empty when unset.
    pub alias: String,
    /// Bridge-port flags, when the link is a bridge port.
    pub port: Option<BridgePort>,
    /// The kind's own settings that plugins check (`IFLA_INFO_DATA`).
    pub data: KindData,
}

impl Link {
    /// A link with only a name and a kind: index 0, down, state unknown, no MAC,
    /// MTU 0, nothing else set. Fill in the rest with struct update syntax.
    pub fn named(name: &str, kind: LinkKind) -> Link {
        Link {
            index: 0,
            name: name.to_string(),
            kind,
            up: false,
            oper_state: OperState::Unknown,
            mac: String::new(),
            mtu: 0,
            master: None,
            parent: None,
            promisc: false,
            allmulti: false,
            txqlen: 0,
            alias: String::new(),
            port: None,
            data: KindData::None,
        }
    }
}

/// The kind-specific settings of a link that plugins read back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KindData {
    #[default]
    None,
    Macvlan(MacvlanMode),
    Ipvlan(IpvlanMode),
    /// The 802.1q VLAN ID.
    Vlan(u16),
    /// A VRF's routing table.
    Vrf(u32),
}

/// The bridge-port flags plugins set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgePort {
    pub hairpin: bool,
    pub isolated: bool,
}

/// macvlan modes (`mode` in the macvlan plugin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvlanMode {
    Private,
    Vepa,
    Bridge,
    Passthru,
    Source,
}

/// ipvlan modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpvlanMode {
    L2,
    L3,
    L3s,
}

/// The kind of a link to create, with what that kind needs.
#[derive(Debug, Clone)]
pub enum KindSpec<'a> {
    /// A veth pair; the peer gets the same MTU and is created directly in
    /// `peer_netns` (the socket's namespace when `None`), so no end ever appears in
    /// the wrong namespace.
    Veth {
        peer: &'a str,
        peer_netns: Option<&'a NetNs>,
        peer_mac: Option<[u8; 6]>,
    },
    Bridge {
        vlan_filtering: bool,
    },
    Macvlan {
        mode: MacvlanMode,
        bcqueuelen: Option<u32>,
    },
    Ipvlan {
        mode: IpvlanMode,
    },
    Vlan {
        id: u16,
    },
    Dummy,
    Vrf {
        table: u32,
    },
    Ifb,
}

impl KindSpec<'_> {
    pub fn kind(&self) -> LinkKind {
        match self {
            KindSpec::Veth { .. } => LinkKind::Veth,
            KindSpec::Bridge { .. } => LinkKind::Bridge,
            KindSpec::Macvlan { .. } => LinkKind::Macvlan,
            KindSpec::Ipvlan { .. } => LinkKind::Ipvlan,
            KindSpec::Vlan { .. } => LinkKind::Vlan,
            KindSpec::Dummy => LinkKind::Dummy,
            KindSpec::Vrf { .. } => LinkKind::Vrf,
            KindSpec::Ifb => LinkKind::Ifb,
        }
    }
}

/// A link to create with [`Netlink::create_link`].
#[derive(Debug, Clone)]
pub struct LinkSpec<'a> {
    pub name: &'a str,
    pub kind: KindSpec<'a>,
    /// `IFLA_LINK`: the lower device of a macvlan, ipvlan or vlan.
    pub parent: Option<u32>,
    /// Create it directly in this namespace instead of the socket's.
    pub netns: Option<&'a NetNs>,
    /// 0 keeps the kernel default.
    pub mtu: u32,
    /// A fixed hardware address; the kernel picks a random one otherwise.
    pub mac: Option<[u8; 6]>,
    /// Created up, as `ip link add ... up`.
    pub up: bool,
    /// Enslaved at creation, as `ip link add ... master BR`.
    pub master: Option<u32>,
    pub txqlen: Option<u32>,
}

impl<'a> LinkSpec<'a> {
    /// A spec with only a name and a kind; set the rest with struct update syntax.
    pub fn new(name: &'a str, kind: KindSpec<'a>) -> LinkSpec<'a> {
        LinkSpec {
            name,
            kind,
            parent: None,
            netns: None,
            mtu: 0,
            mac: None,
            up: false,
            master: None,
            txqlen: None,
        }
    }
}

/// Changes to one link, sent as one request; `None` leaves an attribute alone.
#[derive(Debug, Clone, Default)]
pub struct LinkChange<'a> {
    /// Rename (applied in the target namespace when moving).
    pub name: Option<&'a str>,
    /// Move to this namespace.
    pub netns: Option<&'a NetNs>,
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub promisc: Option<bool>,
    pub allmulti: Option<bool>,
    pub txqlen: Option<u32>,
    /// `IFLA_IFALIAS`; an empty string clears it.
    pub alias: Option<&'a str>,
    /// Enslave to `Some(index)`, or free with `Some(None)`.
    pub master: Option<Option<u32>>,
    /// Bridge-port flags (the link must be a bridge port).
    pub port: Option<BridgePort>,
}

/// Checks a name before it reaches the kernel: longer names make the netlink encoder
/// panic beyond 64 KiB and the kernel refuse them anyway.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains(['/', ':', '\0']) {
        return Err(NetError::Invalid(format!(
            "invalid interface name {:?}: must be 1 to {MAX_NAME_LEN} bytes without '/', ':' or NUL",
            truncated(name)
        )));
    }
    Ok(())
}

/// At most 64 characters of a name, for messages about names that are too long.
pub(super) fn truncated(name: &str) -> String {
    let mut shown: String = name.chars().take(64).collect();
    if shown.len() < name.len() {
        shown.push_str("...");
    }
    shown
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

/// `aa:bb:cc:dd:ee:ff`, as Go's `net.HardwareAddr.String()`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Netlink {
    /// The link named `name`, or `None` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        check_name(name)?;
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        self.get_link(message, &format!("get link {name:?}"))
    }

    /// The link with index `index`, or `None` if there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.get_link(message, &format!("get link {index}"))
    }

    fn get_link(&mut self, message: LinkMessage, op: &str) -> Result<Option<Link>> {
        match self.request(RouteNetlinkMessage::GetLink(message), 0, op) {
            Ok(replies) => Ok(replies.into_iter().find_map(link_from)),
            Err(e) if e.already_gone() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The link named `name`, or an error naming it (upstream's "Link not found").
    pub fn require_link(&mut self, name: &str) -> Result<Link> {
        self.link_by_name(name)?
            .ok_or_else(|| NetError::LinkNotFound(name.to_string()))
    }

    /// Every link in the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.dump(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            "list links",
        )?;
        Ok(replies.into_iter().filter_map(link_from).collect())
    }

    /// Creates a link in one request (see [`LinkSpec`]). Returns it as the kernel
    /// echoes it (`NLM_F_ECHO`; this kernel, 6.18, does), which saves a lookup, or
    /// `None` from kernels that do not echo or when it went to another namespace. The
    /// echo is sent before the link is enslaved, so its `master` is filled in from the
    /// spec. An existing name is an error that answers `already_exists()`.
    pub fn create_link(&mut self, spec: &LinkSpec) -> Result<Option<Link>> {
        let message = create_message(spec)?;
        let replies = self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
            &format!("create {:?} {:?}", spec.kind.kind(), spec.name),
        )?;
        if spec.netns.is_some() {
            return Ok(None);
        }
        Ok(replies
            .into_iter()
            .filter_map(link_from)
            .find(|link| link.name == spec.name)
            .map(|link| Link {
                master: spec.master.or(link.master),
                ..link
            }))
    }

    /// Applies `change` to link `index` in one request.
    pub fn change_link(&mut self, index: u32, change: &LinkChange) -> Result<()> {
        let message = change_message(index, change)?;
        // RTM_NEWLINK without NLM_F_CREATE changes an existing link and, unlike
        // RTM_SETLINK, also takes bridge-port attributes.
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK,
            &format!("change link {index}"),
        )
        .map(drop)
    }

    /// Sets link `index` up or down (a [`LinkChange`] of `up` alone).
    pub fn set_link_up(&mut self, index: u32, up: bool) -> Result<()> {
        self.change_link(
            index,
            &LinkChange {
                up: Some(up),
                ..Default::default()
            },
        )
    }

    /// Deletes link `index` (a veth takes its peer along). Already gone answers
    /// `already_gone()`.
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
        self.request(
            RouteNetlinkMessage::SetLink(bridge_vlan_message(index, vid, flags)),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::LinkFlags;

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
        assert_eq!(
            format_mac(&[0, 0x11, 0xaa, 0xff, 1, 2]),
            "00:11:aa:ff:01:02"
        );
    }

    #[test]
    fn names_are_checked_before_any_message_is_built() {
        let huge = "b".repeat(70_000);
        let spec = LinkSpec::new(
            &huge,
            KindSpec::Bridge {
                vlan_filtering: false,
            },
        );
        let e = create_message(&spec).unwrap_err();
        assert!(matches!(e, NetError::Invalid(_)), "{e}");
        assert!(e.to_string().len() < 200, "the message does not echo 70 kB");
        assert!(check_name("a23456789012345").is_ok());
        assert!(check_name("a234567890123456").is_err());
        assert!(check_name("").is_err());
        let change = LinkChange {
            name: Some("x/y"),
            ..Default::default()
        };
        assert!(change_message(1, &change).is_err());
    }

    #[test]
    fn a_change_is_one_message_with_only_what_changes() {
        let change = LinkChange {
            up: Some(true),
            promisc: Some(false),
            mtu: Some(1400),
            alias: Some("eth7"),
            ..Default::default()
        };
        let m = change_message(5, &change).unwrap();
        assert_eq!(m.header.index, 5);
        assert_eq!(m.header.flags, LinkFlags::Up);
        assert_eq!(m.header.change_mask, LinkFlags::Up | LinkFlags::Promisc);
        assert_eq!(
            m.attributes,
            vec![
                LinkAttribute::Mtu(1400),
                LinkAttribute::IfAlias("eth7".into())
            ]
        );
    }
}
