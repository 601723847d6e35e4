//! Address operations.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};

use crate::{Netlink, Result};

impl Netlink {
    /// Adds `address` (host bits kept, `10.1.2.3/24`) to link `index`. IPv4 gets the
    /// broadcast address `ip addr add` would compute; `nodad` skips IPv6 duplicate
    /// address detection. An existing identical address is `EEXIST`.
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
}

fn address_message(index: u32, address: IpNet) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.index = index;
    message.header.prefix_len = address.prefix_len();
    message.header.family = family(&address.addr());
    message
        .attributes
        .push(AddressAttribute::Local(address.addr()));
    message
        .attributes
        .push(AddressAttribute::Address(address.addr()));
    message
}

pub(crate) fn family(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}
