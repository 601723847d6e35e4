//! A synchronous rtnetlink socket with the operations plugins need.
//!
//! A socket belongs to the network namespace that was current when it was opened, for
//! its whole life; [`Netlink::open_in`] opens one inside a container's namespace so the
//! caller's thread can stay in the host namespace (netavark does the same).

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_ECHO, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::{NetError, NetNs, Result};

/// A network interface as plugins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    /// `aa:bb:cc:dd:ee:ff`, empty when the link has no hardware address.
    pub mac: String,
    pub mtu: u32,
    /// `IFLA_INFO_KIND`: "veth", "bridge", ...; empty for physical devices and `lo`.
    pub kind: String,
    /// The bridge (or other master) this link is enslaved to.
    pub master: Option<u32>,
    /// `IFLA_LINK`: for a veth, the peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
    pub promisc: bool,
    /// Operational state as `ip` shows it, lowercase: "up", "down", "lowerlayerdown", ...
    pub oper_state: String,
    /// Bridge-port flags, when the link is a bridge port.
    pub port: Option<BridgePort>,
}

/// The bridge-port flags plugins set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgePort {
    pub hairpin: bool,
    pub isolated: bool,
}

/// An address on an interface, host bits kept (`10.1.2.3/24`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub address: IpNet,
    /// `rtm_scope`-style scope: 0 universe, 200 site, 253 link, 254 host.
    pub scope: u8,
    /// IPv6 duplicate address detection still running (`IFA_F_TENTATIVE`).
    pub tentative: bool,
    /// IPv6 duplicate address detection found a duplicate (`IFA_F_DADFAILED`).
    pub dad_failed: bool,
}

/// Dumps interrupted by a concurrent change are retried this many times, then the
/// partial answer is used (as upstream's `netlinksafe`).
const DUMP_TRIES: usize = 5;

use crate::link::ENODEV;

/// An rtnetlink socket.
pub struct Netlink {
    transport: Transport,
    sequence: u32,
}

/// The kernel, or a fake one that acknowledges every request and records it: tests
/// of message-building logic for devices this kernel lacks (vlan, ipvlan, vrf, ...)
/// run against the fake.
enum Transport {
    Kernel(Socket),
    Fake(Vec<RouteNetlinkMessage>),
}

impl Netlink {
    /// Opens a socket in the calling thread's namespace.
    pub fn open() -> Result<Netlink> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| NetError::io("open netlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| NetError::io("bind netlink socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| NetError::io("connect netlink socket", e))?;
        // Best effort: extended acks give the kernel's reason ("Unknown device type");
        // capped acks keep error replies small.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        // Strict checking lets the kernel filter dumps (addresses of one link) instead
        // of sending the whole namespace; on kernels without it we filter ourselves.
        let _ = socket.set_netlink_get_strict_chk(true);
        Ok(Netlink {
            transport: Transport::Kernel(socket),
            sequence: 0,
        })
    }

    /// A socket to a fake kernel: every request succeeds with no reply data, and is
    /// kept for [`Netlink::sent`].
    pub fn fake() -> Netlink {
        Netlink {
            transport: Transport::Fake(Vec::new()),
            sequence: 0,
        }
    }

    /// The requests a fake socket received, in order (empty for a real one).
    pub fn sent(&self) -> Vec<RouteNetlinkMessage> {
        match &self.transport {
            Transport::Fake(sent) => sent.clone(),
            Transport::Kernel(_) => Vec::new(),
        }
    }

    /// Debug renderings of the requests a fake socket received: a stable way for
    /// tests outside this crate to look at them without the netlink types.
    pub fn sent_text(&self) -> Vec<String> {
        self.sent().iter().map(|m| format!("{m:?}")).collect()
    }

    /// Opens a socket bound to `netns`; the calling thread does not stay there.
    pub fn open_in(netns: &NetNs) -> Result<Netlink> {
        netns.run(Netlink::open)?
    }

    /// The link named `name`, or `None` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            RouteNetlinkMessage::GetLink(message),
            0,
            &format!("get link {name:?}"),
        ) {
            Ok(replies) => Ok(replies.into_iter().find_map(link_from)),
            Err(e) if e.errno() == Some(ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link in the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.dump(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            "list links",
        )?;
        Ok(replies.into_iter().filter_map(link_from).collect())
    }

    /// Sets the administrative state of link `index`.
    pub fn set_link_up(&mut self, index: u32, up: bool) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        message.header.change_mask = LinkFlags::Up;
        let op = format!("set link {index} {}", if up { "up" } else { "down" });
        self.request(RouteNetlinkMessage::SetLink(message), NLM_F_ACK, &op)
            .map(drop)
    }

    /// The addresses on link `index` (both families), in the kernel's order.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<Address>> {
        Ok(self
            .dump_addresses(index)?
            .into_iter()
            .filter(|a| a.index == index)
            .collect())
    }

    /// Every address in the namespace.
    pub fn all_addresses(&mut self) -> Result<Vec<Address>> {
        self.dump_addresses(0)
    }

    /// An address dump, limited to link `index` (0: all) by a strict-checking kernel.
    fn dump_addresses(&mut self, index: u32) -> Result<Vec<Address>> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Unspec;
        message.header.index = index;
        let replies = self.dump(RouteNetlinkMessage::GetAddress(message), "list addresses")?;
        Ok(replies.into_iter().filter_map(address_from).collect())
    }

    pub(crate) fn dump(
        &mut self,
        message: RouteNetlinkMessage,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut last = Vec::new();
        for _ in 0..DUMP_TRIES {
            let (replies, interrupted) = self.exchange(message.clone(), NLM_F_DUMP, op)?;
            if !interrupted {
                return Ok(replies);
            }
            last = replies;
        }
        Ok(last)
    }

    pub(crate) fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(message, flags, op)
            .map(|(replies, _)| replies)
    }

    /// Sends one request and collects the replies until the ack, the error or the end
    /// of the dump. Returns whether the kernel flagged the dump as interrupted.
    ///
    /// A request with `NLM_F_ECHO` gets the kernel's notification of what it did
    /// before its ack; it is read up to the ack, since a later step of the same
    /// request (enslaving a new link, say) may still fail.
    fn exchange(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool)> {
        self.sequence = self.sequence.wrapping_add(1);
        let socket = match &mut self.transport {
            Transport::Kernel(socket) => socket,
            Transport::Fake(sent) => {
                sent.push(message);
                return Ok((Vec::new(), false));
            }
        };
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buffer = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buffer);
        socket.send(&buffer, 0).map_err(|e| NetError::io(op, e))?;

        let expects_more = flags & NLM_F_DUMP == NLM_F_DUMP || flags & NLM_F_ECHO != 0;
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let (bytes, _) = socket.recv_from_full().map_err(|e| NetError::io(op, e))?;
            let mut offset = 0;
            while offset < bytes.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[offset..])
                    .map_err(|e| NetError::Decode {
                        op: op.to_string(),
                        detail: e.to_string(),
                    })?;
                let length = (reply.header.length as usize).max(16);
                offset += (length + 3) & !3;
                if reply.header.sequence_number != self.sequence {
                    continue;
                }
                if reply.header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(inner) => {
                        replies.push(inner);
                        if !expects_more {
                            return Ok((replies, interrupted));
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok((replies, interrupted)),
                    NetlinkPayload::Error(error) => match error.code {
                        None => return Ok((replies, interrupted)),
                        Some(code) => {
                            return Err(NetError::Netlink {
                                op: op.to_string(),
                                errno: code.get().abs(),
                                message: extended_ack_message(reply.header.flags, &error.header),
                            });
                        }
                    },
                    _ => {}
                }
            }
        }
    }
}

/// The `NLMSGERR_ATTR_MSG` text of an error reply, if the kernel sent one. The payload
/// after the error code is the request's header (and, unless capped, its body), then
/// the extended-ack attributes.
fn extended_ack_message(flags: u16, payload: &[u8]) -> Option<String> {
    const NLM_F_CAPPED: u16 = 0x100;
    const NLM_F_ACK_TLVS: u16 = 0x200;
    const NLMSGERR_ATTR_MSG: u16 = 1;
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < 16 {
        return None;
    }
    let mut offset = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        u32::from_ne_bytes(payload[0..4].try_into().ok()?) as usize
    };
    while offset + 4 <= payload.len() {
        let len = u16::from_ne_bytes(payload[offset..offset + 2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(payload[offset + 2..offset + 4].try_into().ok()?) & 0x3fff;
        if len < 4 || offset + len > payload.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &payload[offset + 4..offset + len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        offset += (len + 3) & !3;
    }
    None
}

pub(crate) fn link_from(message: RouteNetlinkMessage) -> Option<Link> {
    let RouteNetlinkMessage::NewLink(message) = message else {
        return None;
    };
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        up: message.header.flags.contains(LinkFlags::Up),
        mac: String::new(),
        mtu: 0,
        kind: String::new(),
        master: None,
        peer_index: None,
        promisc: message.header.flags.contains(LinkFlags::Promisc),
        oper_state: String::new(),
        port: None,
    };
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Address(bytes) => link.mac = format_mac(&bytes),
            LinkAttribute::Controller(index) => link.master = Some(index),
            LinkAttribute::Link(index) => link.peer_index = Some(index),
            LinkAttribute::OperState(state) => {
                link.oper_state = format!("{state:?}").to_lowercase()
            }
            LinkAttribute::LinkInfo(infos) => crate::link::read_link_info(&mut link, infos),
            _ => {}
        }
    }
    Some(link)
}

pub(crate) fn address_from(message: RouteNetlinkMessage) -> Option<Address> {
    let RouteNetlinkMessage::NewAddress(message) = message else {
        return None;
    };
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS
    // is the peer there. Prefer IFA_LOCAL, as iproute2 does.
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(message.header.flags.bits());
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags = f.bits(),
            _ => {}
        }
    }
    const IFA_F_DADFAILED: u32 = 0x08;
    const IFA_F_TENTATIVE: u32 = 0x40;
    let ip: IpAddr = local.or(address)?;
    let scope = match message.header.scope {
        AddressScope::Universe => 0,
        AddressScope::Site => 200,
        AddressScope::Link => 253,
        AddressScope::Host => 254,
        AddressScope::Nowhere => 255,
        AddressScope::Other(n) => n,
        _ => 0,
    };
    Some(Address {
        index: message.header.index,
        address: IpNet::new(ip, message.header.prefix_len).ok()?,
        scope,
        tentative: flags & IFA_F_TENTATIVE != 0,
        dad_failed: flags & IFA_F_DADFAILED != 0,
    })
}

/// `aa:bb:cc:dd:ee:ff`, as Go's `net.HardwareAddr.String()`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_format() {
        assert_eq!(
            format_mac(&[0, 0x11, 0xaa, 0xff, 1, 2]),
            "00:11:aa:ff:01:02"
        );
        assert_eq!(format_mac(&[0; 6]), "00:00:00:00:00:00");
    }

    #[test]
    fn extended_ack_text_is_found_after_a_capped_header() {
        let mut payload = vec![0u8; 16];
        let text = b"Unknown device type\0";
        let len = (4 + text.len()) as u16;
        payload.extend_from_slice(&len.to_ne_bytes());
        payload.extend_from_slice(&1u16.to_ne_bytes());
        payload.extend_from_slice(text);
        assert_eq!(
            extended_ack_message(0x300, &payload).as_deref(),
            Some("Unknown device type")
        );
        assert_eq!(extended_ack_message(0, &payload), None);
    }
}
