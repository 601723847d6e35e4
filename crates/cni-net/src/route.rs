//! Route operations.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};

use crate::addr::family;
use crate::{Netlink, Result};

/// The main routing table.
pub const TABLE_MAIN: u32 = 254;

/// A unicast route as plugins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Preferred source address.
    pub src: Option<IpAddr>,
    /// Routing table; 0 means main.
    pub table: u32,
    pub metric: u32,
    /// `rtm_scope`: 0 universe, 253 link, 254 host.
    pub scope: u8,
}

impl Route {
    /// A route to `dst` via `gw` (if any) out of `oif`, in the main table.
    pub fn new(dst: IpNet, gw: Option<IpAddr>, oif: u32) -> Route {
        Route {
            dst,
            gw,
            oif: Some(oif),
            src: None,
            table: 0,
            metric: 0,
            scope: 0,
        }
    }

    fn table_id(&self) -> u32 {
        if self.table == 0 {
            TABLE_MAIN
        } else {
            self.table
        }
    }
}

impl Netlink {
    /// Adds `route`; an identical existing one is `EEXIST`.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        self.send_route(route, NLM_F_CREATE | NLM_F_EXCL, "add")
    }

    /// Adds `route` next to any route to the same destination (upstream's
    /// `RouteAddEcmp`: a second gateway for one destination is accepted).
    pub fn append_route(&mut self, route: &Route) -> Result<()> {
        self.send_route(route, NLM_F_CREATE | NLM_F_APPEND, "add")
    }

    pub fn del_route(&mut self, route: &Route) -> Result<()> {
        self.send_route(route, 0, "delete")
    }

    fn send_route(&mut self, route: &Route, flags: u16, verb: &str) -> Result<()> {
        let mut message = route_message(route);
        if verb == "delete" {
            // Match routes of any origin (the kernel's connected routes included).
            message.header.protocol = RouteProtocol::Unspec;
        }
        let op = format!(
            "failed to {verb} route '{} via {}'",
            route.dst,
            route
                .gw
                .map(|g| g.to_string())
                .unwrap_or_else(|| "<nil>".into())
        );
        let message = if verb == "delete" {
            RouteNetlinkMessage::DelRoute(message)
        } else {
            RouteNetlinkMessage::NewRoute(message)
        };
        self.request(message, NLM_F_ACK | flags, &op).map(drop)
    }

    /// The output interface the kernel would use to reach `dst` (`ip route get`), or
    /// `None` when there is no route or it has no interface.
    pub fn route_get(&mut self, dst: IpAddr) -> Result<Option<u32>> {
        let mut message = RouteMessage::default();
        message.header.address_family = family(&dst);
        message.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        let replies = match self.request(
            RouteNetlinkMessage::GetRoute(message),
            0,
            &format!("failed to get route to {dst}"),
        ) {
            Ok(replies) => replies,
            // Unreachable destinations are an error reply, not an empty answer.
            Err(e) if e.errno().is_some() => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(replies.into_iter().find_map(route_from).and_then(|r| r.oif))
    }

    /// The unicast routes of one family (`v6`) in every table.
    pub fn routes(&mut self, v6: bool) -> Result<Vec<Route>> {
        let mut message = RouteMessage::default();
        message.header.address_family = family(&if v6 {
            IpAddr::from([0u16; 8])
        } else {
            IpAddr::from([0u8; 4])
        });
        let replies = self.dump(RouteNetlinkMessage::GetRoute(message), "list routes")?;
        Ok(replies.into_iter().filter_map(route_from).collect())
    }
}

fn route_message(route: &Route) -> RouteMessage {
    let mut message = RouteMessage::default();
    let header = &mut message.header;
    header.address_family = family(&route.dst.addr());
    header.destination_prefix_length = route.dst.prefix_len();
    let table = route.table_id();
    header.table = if table < 256 {
        table as u8
    } else {
        RouteHeader::RT_TABLE_UNSPEC
    };
    header.protocol = RouteProtocol::Boot;
    header.kind = RouteType::Unicast;
    header.scope = match route.scope {
        253 => RouteScope::Link,
        254 => RouteScope::Host,
        0 => RouteScope::Universe,
        n => RouteScope::Other(n),
    };
    let attributes = &mut message.attributes;
    attributes.push(RouteAttribute::Table(table));
    attributes.push(RouteAttribute::Destination(RouteAddress::from(
        route.dst.network(),
    )));
    if let Some(gw) = route.gw {
        attributes.push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(oif) = route.oif {
        attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(src) = route.src {
        attributes.push(RouteAttribute::PrefSource(RouteAddress::from(src)));
    }
    if route.metric > 0 {
        attributes.push(RouteAttribute::Priority(route.metric));
    }
    message
}

fn route_from(message: RouteNetlinkMessage) -> Option<Route> {
    let RouteNetlinkMessage::NewRoute(message) = message else {
        return None;
    };
    if message.header.kind != RouteType::Unicast {
        return None;
    }
    let ip = |a: &RouteAddress| match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    let v6 = message.header.address_family == family(&IpAddr::from([0u16; 8]));
    let mut dst = None;
    let mut route = Route {
        dst: IpNet::new(
            if v6 {
                IpAddr::from([0u16; 8])
            } else {
                IpAddr::from([0u8; 4])
            },
            0,
        )
        .ok()?,
        gw: None,
        oif: None,
        src: None,
        table: u32::from(message.header.table),
        metric: 0,
        scope: u8::from(message.header.scope),
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(a) => dst = ip(a),
            RouteAttribute::Gateway(a) => route.gw = ip(a),
            RouteAttribute::PrefSource(a) => route.src = ip(a),
            RouteAttribute::Oif(index) => route.oif = Some(*index),
            RouteAttribute::Table(table) => route.table = *table,
            RouteAttribute::Priority(metric) => route.metric = *metric,
            _ => {}
        }
    }
    if let Some(dst) = dst {
        route.dst = IpNet::new(dst, message.header.destination_prefix_length).ok()?;
    }
    Some(route)
}
