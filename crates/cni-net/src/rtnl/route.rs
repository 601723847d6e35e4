//! Routes.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType,
};

use super::Family;
use crate::{Netlink, Result};

/// The main routing table.
pub const TABLE_MAIN: u32 = 254;

/// Route and address scope (`rtm_scope`/`ifa_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub enum Scope {
    #[default]
    Universe,
    Site,
    Link,
    Host,
    Nowhere,
    Other(u8),
}

impl Scope {
    pub fn number(self) -> u8 {
        match self {
            Scope::Universe => 0,
            Scope::Site => 200,
            Scope::Link => 253,
            Scope::Host => 254,
            Scope::Nowhere => 255,
            Scope::Other(n) => n,
        }
    }

    pub fn from_number(n: u8) -> Scope {
        match n {
            0 => Scope::Universe,
            200 => Scope::Site,
            253 => Scope::Link,
            254 => Scope::Host,
            255 => Scope::Nowhere,
            n => Scope::Other(n),
        }
    }
}

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
    pub scope: Scope,
    /// Made by the kernel for an address (`proto kernel`), not by a plugin.
    pub kernel: bool,
    /// The next hops of a multipath (ECMP) route, which has no `gw` or `oif` of
    /// its own; empty for a single-path route.
    pub nexthops: Vec<NextHop>,
}

/// One next hop of a multipath route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub gw: Option<IpAddr>,
    pub oif: u32,
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
            scope: Scope::Universe,
            kernel: false,
            nexthops: Vec::new(),
        }
    }

    /// Whether the route leaves by link `index` (itself, or one of its next hops).
    pub fn uses_link(&self, index: u32) -> bool {
        self.oif == Some(index) || self.nexthops.iter().any(|h| h.oif == index)
    }

    /// The table this route lives in, main for 0.
    pub fn table_id(&self) -> u32 {
        if self.table == 0 {
            TABLE_MAIN
        } else {
            self.table
        }
    }
}

impl Netlink {
    /// Adds `route`; an identical existing one answers `already_exists()`.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        self.send_route(route, NLM_F_CREATE | NLM_F_EXCL, false)
    }

    /// Adds `route` next to any route to the same destination (upstream's
    /// `RouteAddEcmp`: a second gateway for one destination is accepted).
    pub fn append_route(&mut self, route: &Route) -> Result<()> {
        self.send_route(route, NLM_F_CREATE | NLM_F_APPEND, false)
    }

    /// Adds `route`, or replaces the route to the same destination in its table
    /// (`ip route replace`).
    pub fn replace_route(&mut self, route: &Route) -> Result<()> {
        self.send_route(route, NLM_F_CREATE | NLM_F_REPLACE, false)
    }

    /// Deletes `route`, whatever its origin (the kernel's connected routes too).
    pub fn del_route(&mut self, route: &Route) -> Result<()> {
        self.send_route(route, 0, true)
    }

    fn send_route(&mut self, route: &Route, flags: u16, delete: bool) -> Result<()> {
        let mut message = route_message(route);
        let op = format!(
            "failed to {} route '{} via {}'",
            if delete { "delete" } else { "add" },
            route.dst,
            route
                .gw
                .map(|g| g.to_string())
                .unwrap_or_else(|| "<nil>".into())
        );
        let message = if delete {
            // Match routes of any origin (the kernel's connected routes included).
            message.header.protocol = RouteProtocol::Unspec;
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
        message.header.address_family = Family::of(&dst).wire();
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

    /// The unicast routes of one family in every table.
    pub fn routes(&mut self, family: Family) -> Result<Vec<Route>> {
        let mut message = RouteMessage::default();
        message.header.address_family = family.wire();
        let replies = self.dump(RouteNetlinkMessage::GetRoute(message), "list routes")?;
        Ok(replies.into_iter().filter_map(route_from).collect())
    }
}

/// The message for `route` (requests, and the fake kernel's reports).
pub(crate) fn route_message(route: &Route) -> RouteMessage {
    let mut message = RouteMessage::default();
    let header = &mut message.header;
    header.address_family = Family::of(&route.dst.addr()).wire();
    header.destination_prefix_length = route.dst.prefix_len();
    let table = route.table_id();
    header.table = if table < 256 {
        table as u8
    } else {
        RouteHeader::RT_TABLE_UNSPEC
    };
    header.protocol = if route.kernel {
        RouteProtocol::Kernel
    } else {
        RouteProtocol::Boot
    };
    header.kind = RouteType::Unicast;
    header.scope = RouteScope::from(route.scope.number());
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
    if !route.nexthops.is_empty() {
        let hops = route
            .nexthops
            .iter()
            .map(|hop| {
                let mut next = RouteNextHop::default();
                next.interface_index = hop.oif;
                if let Some(gw) = hop.gw {
                    next.attributes
                        .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
                }
                next
            })
            .collect();
        attributes.push(RouteAttribute::MultiPath(hops));
    }
    message
}

pub(crate) fn route_from(message: RouteNetlinkMessage) -> Option<Route> {
    match message {
        RouteNetlinkMessage::NewRoute(message) | RouteNetlinkMessage::DelRoute(message) => {
            route_from_message(&message)
        }
        _ => None,
    }
}

/// Reads a route message; `None` for other than unicast routes.
pub(crate) fn route_from_message(message: &RouteMessage) -> Option<Route> {
    if !matches!(message.header.kind, RouteType::Unicast | RouteType::Unspec) {
        return None;
    }
    let ip = |a: &RouteAddress| match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    let unspecified = match Family::from_wire(message.header.address_family)? {
        Family::V4 => IpAddr::from([0u8; 4]),
        Family::V6 => IpAddr::from([0u16; 8]),
    };
    let mut dst = unspecified;
    let mut route = Route {
        dst: IpNet::new(unspecified, 0).ok()?,
        gw: None,
        oif: None,
        src: None,
        table: u32::from(message.header.table),
        metric: 0,
        scope: Scope::from_number(u8::from(message.header.scope)),
        kernel: message.header.protocol == RouteProtocol::Kernel,
        nexthops: Vec::new(),
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(a) => dst = ip(a).unwrap_or(dst),
            RouteAttribute::Gateway(a) => route.gw = ip(a),
            RouteAttribute::PrefSource(a) => route.src = ip(a),
            RouteAttribute::Oif(index) => route.oif = Some(*index),
            RouteAttribute::Table(table) => route.table = *table,
            RouteAttribute::Priority(metric) => route.metric = *metric,
            RouteAttribute::MultiPath(hops) => {
                route.nexthops = hops
                    .iter()
                    .map(|hop| NextHop {
                        oif: hop.interface_index,
                        gw: hop.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Gateway(a) => ip(a),
                            _ => None,
                        }),
                    })
                    .collect();
            }
            _ => {}
        }
    }
    route.dst = IpNet::new(dst, message.header.destination_prefix_length).ok()?;
    Some(route)
}

/// Whether a delete request names this route: every field it gives must match
/// (the kernel's `fib_table_delete` rules, for the fake).
pub(crate) fn delete_matches(request: &RouteMessage, route: &Route) -> bool {
    let Some(wanted) = route_from_message(request) else {
        return false;
    };
    // IPv4 matches the scope exactly unless the request says "nowhere" (as `ip route
    // del` does); IPv6 routes have no scopes to match.
    let scope_matches = request.header.scope == RouteScope::NoWhere
        || route.dst.addr().is_ipv6()
        || wanted.scope == route.scope;
    wanted.dst == route.dst
        && wanted.table_id() == route.table_id()
        && wanted.gw.is_none_or(|gw| Some(gw) == route.gw)
        && wanted.oif.is_none_or(|oif| Some(oif) == route.oif)
        && scope_matches
}
