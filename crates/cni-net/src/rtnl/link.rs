//! Links: one [`Netlink::create_link`] for every kind the plugins make, one
//! [`LinkChange`] sent as a single request for every attribute they change, lookups,
//! and bridge-port VLANs.

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort,
    InfoData, InfoIpVlan, InfoKind, InfoMacVlan, InfoPortData, InfoPortKind, InfoVeth, InfoVlan,
    InfoVrf, IpVlanMode, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode, State,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::{NetError, NetNs, Netlink, Result};

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
    fn from_wire(kind: &InfoKind) -> LinkKind {
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

    fn wire(&self) -> Option<InfoKind> {
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
    fn from_wire(state: State) -> OperState {
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
fn truncated(name: &str) -> String {
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

/// The RTM_NEWLINK message that creates `spec`. Pure: tested without a kernel.
fn create_message(spec: &LinkSpec) -> Result<LinkMessage> {
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
            let mut info = vec![InfoMacVlan::Mode(match mode {
                MacvlanMode::Private => MacVlanMode::Private,
                MacvlanMode::Vepa => MacVlanMode::Vepa,
                MacvlanMode::Bridge => MacVlanMode::Bridge,
                MacvlanMode::Passthru => MacVlanMode::Passthrough,
                MacvlanMode::Source => MacVlanMode::Source,
            })];
            if let Some(len) = bcqueuelen {
                info.push(InfoMacVlan::BcQueueLen(*len));
            }
            Some(InfoData::MacVlan(info))
        }
        KindSpec::Ipvlan { mode } => Some(InfoData::IpVlan(vec![InfoIpVlan::Mode(match mode {
            IpvlanMode::L2 => IpVlanMode::L2,
            IpvlanMode::L3 => IpVlanMode::L3,
            IpvlanMode::L3s => IpVlanMode::L3S,
        })])),
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
fn change_message(index: u32, change: &LinkChange) -> Result<LinkMessage> {
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
        name: String::new(),
        kind: LinkKind::Device,
        up: message.header.flags.contains(LinkFlags::Up),
        oper_state: OperState::Unknown,
        mac: String::new(),
        mtu: 0,
        master: None,
        parent: None,
        promisc: message.header.flags.contains(LinkFlags::Promisc),
        allmulti: message.header.flags.contains(LinkFlags::Allmulti),
        txqlen: 0,
        alias: String::new(),
        port: None,
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
