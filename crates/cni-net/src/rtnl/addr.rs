//! Addresses.

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};

use super::Family;
use super::route::Scope;
use crate::{Netlink, Result};

/// An address on an interface, host bits kept (`10.1.2.3/24`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub address: IpNet,
    pub scope: Scope,
    /// IPv6 duplicate address detection still running (`IFA_F_TENTATIVE`).
    pub tentative: bool,
    /// IPv6 duplicate address detection found a duplicate (`IFA_F_DADFAILED`).
    pub dad_failed: bool,
}

const IFA_F_NODAD: u32 = 0x02;
const IFA_F_DADFAILED: u32 = 0x08;
const IFA_F_TENTATIVE: u32 = 0x40;

impl Netlink {
    /// Adds `address` (host bits kept, `10.1.2.3/24`) to link `index`. IPv4 gets the
    /// broadcast address `ip addr add` would compute; `nodad` skips IPv6 duplicate
    /// address detection. An identical address answers `already_exists()`.
    pub fn add_address(&mut self, index: u32, address: IpNet, nodad: bool) -> Result<()> {
        let mut message = address_message(index, address);
        if let IpNet::V4(v4) = address
            && v4.prefix_len() < 31
        {
            message
                .attributes
                .push(AddressAttribute::Broadcast(v4.broadcast()));
        }
        if nodad {
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!("failed to add IP addr {address} to link {index}"),
        )
        .map(drop)
    }

    /// Removes `address` from link `index`.
    pub fn del_address(&mut self, index: u32, address: IpNet) -> Result<()> {
        self.request(
            RouteNetlinkMessage::DelAddress(address_message(index, address)),
            NLM_F_ACK,
            &format!("failed to delete IP addr {address} from link {index}"),
        )
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
        message.header.index = index;
        let replies = self.dump(RouteNetlinkMessage::GetAddress(message), "list addresses")?;
        Ok(replies.into_iter().filter_map(address_from).collect())
    }
}

fn address_message(index: u32, address: IpNet) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.index = index;
    message.header.prefix_len = address.prefix_len();
    message.header.family = Family::of(&address.addr()).wire();
    message
        .attributes
        .push(AddressAttribute::Local(address.addr()));
    message
        .attributes
        .push(AddressAttribute::Address(address.addr()));
    message
}

pub(crate) fn address_from(message: RouteNetlinkMessage) -> Option<Address> {
    let RouteNetlinkMessage::NewAddress(message) = message else {
        return None;
    };
    address_from_message(&message)
}

/// Reads an address message: the kernel's report, or a request.
pub(crate) fn address_from_message(message: &AddressMessage) -> Option<Address> {
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
    Some(Address {
        index: message.header.index,
        address: IpNet::new(local.or(address)?, message.header.prefix_len).ok()?,
        scope: Scope::from_number(u8::from(message.header.scope)),
        tentative: flags & IFA_F_TENTATIVE != 0,
        dad_failed: flags & IFA_F_DADFAILED != 0,
    })
}

/// The message the kernel reports `address` with (the fake kernel's replies).
pub(crate) fn address_report(address: &Address) -> AddressMessage {
    let mut message = address_message(address.index, address.address);
    message.header.scope = address.scope.number().into();
    let mut flags = 0;
    if address.tentative {
        flags |= IFA_F_TENTATIVE;
    }
    if address.dad_failed {
        flags |= IFA_F_DADFAILED;
    }
    message
        .attributes
        .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
            flags,
        )));
    message
}

/// Whether an address request asked for no duplicate address detection.
pub(crate) fn requested_nodad(message: &AddressMessage) -> bool {
    message.attributes.iter().any(|a| match a {
        AddressAttribute::Flags(f) => f.bits() & IFA_F_NODAD != 0,
        _ => false,
    })
}
