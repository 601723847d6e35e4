//! How the fake kernel answers each request, following the kernel's rules: the
//! dispatch, and addresses, routes, rules, qdiscs and filters (links: `links.rs`).

use netlink_packet_core::{NLM_F_APPEND, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::TcMessage;

use super::super::Family;
use super::super::addr::{address_from_message, address_report, requested_nodad};
use super::super::link::link_message;
use super::super::route::{Route, Scope, delete_matches, route_from_message, route_message};
use super::super::rule::{self, rule_from_message, rule_message};
use super::super::tc::{Handle, Redirect, qdisc_from_message, qdisc_message, redirect_target};
use super::create::new_link;
use super::links::{
    add_connected_route, bridge_vlan, change_link, delete_link, find_link, get, reported,
};
use super::{EADDRNOTAVAIL, EEXIST, EINVAL, ENETUNREACH, ENODEV, ENOENT, EOPNOTSUPP, ESRCH, State};

pub(super) type Answer = Result<Vec<RouteNetlinkMessage>, i32>;

pub(super) fn handle(
    state: &mut State,
    ns: u32,
    message: RouteNetlinkMessage,
    flags: u16,
) -> Answer {
    use RouteNetlinkMessage as M;
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    match message {
        M::NewLink(m) | M::SetLink(m) if m.header.interface_family == AddressFamily::Bridge => {
            bridge_vlan(state, ns, &m, true)
        }
        M::DelLink(m) if m.header.interface_family == AddressFamily::Bridge => {
            bridge_vlan(state, ns, &m, false)
        }
        M::NewLink(m) => new_link(state, ns, &m, flags),
        M::SetLink(m) => {
            let index = find_link(state, ns, &m)?;
            change_link(state, ns, index, &m).map(|_| vec![])
        }
        M::DelLink(m) => {
            let index = find_link(state, ns, &m)?;
            delete_link(state, ns, index);
            Ok(vec![])
        }
        M::GetLink(_) if dump => {
            let links = state.ns(ns).map(|n| n.links.clone()).unwrap_or_default();
            Ok(links
                .iter()
                .map(|l| M::NewLink(link_message(&reported(state, ns, l))))
                .collect())
        }
        M::GetLink(m) => {
            let index = find_link(state, ns, &m)?;
            let link = get(state, ns, index).ok_or(ENODEV)?;
            Ok(vec![M::NewLink(link_message(&reported(state, ns, &link)))])
        }
        M::NewAddress(m) => new_address(state, ns, &m, flags),
        M::DelAddress(m) => {
            let wanted = address_from_message(&m).ok_or(EINVAL)?;
            let n = state.ns_mut(ns).ok_or(EINVAL)?;
            let at = n
                .addresses
                .iter()
                .position(|a| a.index == wanted.index && a.address == wanted.address)
                .ok_or(EADDRNOTAVAIL)?;
            let gone = n.addresses.remove(at);
            n.routes.retain(|r| {
                !(r.kernel && r.oif == Some(gone.index) && r.dst == gone.address.trunc())
            });
            Ok(vec![])
        }
        M::GetAddress(m) => {
            let n = state.ns(ns).ok_or(EINVAL)?;
            Ok(n.addresses
                .iter()
                .filter(|a| m.header.index == 0 || a.index == m.header.index)
                .map(|a| M::NewAddress(address_report(a)))
                .collect())
        }
        M::NewRoute(m) => new_route(state, ns, &m, flags),
        M::DelRoute(m) => {
            let n = state.ns_mut(ns).ok_or(EINVAL)?;
            let at = n
                .routes
                .iter()
                .position(|r| delete_matches(&m, r))
                .ok_or(ESRCH)?;
            n.routes.remove(at);
            Ok(vec![])
        }
        M::GetRoute(m) if dump => {
            let family = Family::from_wire(m.header.address_family);
            let n = state.ns(ns).ok_or(EINVAL)?;
            Ok(n.routes
                .iter()
                .filter(|r| family.is_none_or(|f| f == Family::of(&r.dst.addr())))
                .map(|r| M::NewRoute(route_message(r)))
                .collect())
        }
        M::GetRoute(m) => {
            let wanted = route_from_message(&m).ok_or(EINVAL)?;
            let n = state.ns(ns).ok_or(EINVAL)?;
            let best = n
                .routes
                .iter()
                .filter(|r| r.table_id() == super::super::route::TABLE_MAIN)
                .filter(|r| r.dst.contains(&wanted.dst.addr()))
                .max_by_key(|r| r.dst.prefix_len())
                .ok_or(ENETUNREACH)?;
            Ok(vec![M::NewRoute(route_message(best))])
        }
        M::NewRule(m) => {
            let mut wanted = rule_from_message(&m).ok_or(EINVAL)?;
            let n = state.ns_mut(ns).ok_or(EINVAL)?;
            if wanted.priority.is_none() {
                // The kernel puts an unnumbered rule just above the first numbered
                // one after priority 0.
                let next = n
                    .rules
                    .iter()
                    .filter(|r| r.family == wanted.family)
                    .filter_map(|r| r.priority)
                    .filter(|p| *p > 0)
                    .min()
                    .unwrap_or(1);
                wanted.priority = Some(next.saturating_sub(1));
            }
            if flags & NLM_F_EXCL != 0 && n.rules.contains(&wanted) {
                return Err(EEXIST);
            }
            n.rules.push(wanted);
            n.rules.sort_by_key(|r| (r.family, r.priority));
            Ok(vec![])
        }
        M::DelRule(m) => {
            let wanted = rule_from_message(&m).ok_or(EINVAL)?;
            let n = state.ns_mut(ns).ok_or(EINVAL)?;
            let at = n
                .rules
                .iter()
                .position(|r| rule::delete_matches(&wanted, r))
                .ok_or(ENOENT)?;
            n.rules.remove(at);
            Ok(vec![])
        }
        M::GetRule(m) => {
            let family = Family::from_wire(m.header.family);
            let n = state.ns(ns).ok_or(EINVAL)?;
            n.rules
                .iter()
                .filter(|r| family.is_none_or(|f| f == r.family))
                .map(|r| rule_message(r).map(M::NewRule).map_err(|_| EINVAL))
                .collect()
        }
        M::NewQueueDiscipline(m) => {
            let qdisc = qdisc_from_message(&m).ok_or(EINVAL)?;
            get(state, ns, qdisc.index).ok_or(ENODEV)?;
            let n = state.ns_mut(ns).ok_or(EINVAL)?;
            if n.qdiscs
                .iter()
                .any(|q| q.index == qdisc.index && q.parent == qdisc.parent)
            {
                return Err(EEXIST);
            }
            n.qdiscs.push(qdisc);
            Ok(vec![])
        }
        M::DelQueueDiscipline(m) => {
            let index = u32::try_from(m.header.index).map_err(|_| EINVAL)?;
            let parent = Handle::new(m.header.parent.major, m.header.parent.minor);
            let n = state.ns_mut(ns).ok_or(EINVAL)?;
            let at = n
                .qdiscs
                .iter()
                .position(|q| q.index == index && q.parent == parent)
                .ok_or(ENOENT)?;
            n.qdiscs.remove(at);
            n.redirects
                .retain(|r| !(r.index == index && r.parent == parent));
            Ok(vec![])
        }
        M::GetQueueDiscipline(m) => {
            let n = state.ns(ns).ok_or(EINVAL)?;
            n.qdiscs
                .iter()
                .filter(|q| m.header.index == 0 || q.index as i32 == m.header.index)
                .map(|q| {
                    qdisc_message(q)
                        .map(M::NewQueueDiscipline)
                        .map_err(|_| EINVAL)
                })
                .collect()
        }
        M::NewTrafficFilter(m) => new_redirect(state, ns, &m),
        _ => Err(EOPNOTSUPP),
    }
}

fn new_address(
    state: &mut State,
    ns: u32,
    m: &netlink_packet_route::address::AddressMessage,
    flags: u16,
) -> Answer {
    let mut wanted = address_from_message(m).ok_or(EINVAL)?;
    let link = get(state, ns, wanted.index).ok_or(ENODEV)?;
    // IPv6 DAD: tentative until it completes, which the fake does at once unless
    // the request said nodad (then never tentative either).
    let _ = requested_nodad(m);
    wanted.tentative = false;
    wanted.scope = if wanted.address.addr().is_loopback() {
        Scope::Host
    } else {
        Scope::Universe
    };
    let n = state.ns_mut(ns).ok_or(EINVAL)?;
    if let Some(existing) = n
        .addresses
        .iter()
        .position(|a| a.index == wanted.index && a.address.addr() == wanted.address.addr())
    {
        if flags & NLM_F_EXCL != 0 {
            return Err(EEXIST);
        }
        n.addresses[existing] = wanted;
        return Ok(vec![]);
    }
    n.addresses.push(wanted.clone());
    if link.up {
        add_connected_route(n, &wanted);
    }
    Ok(vec![])
}

fn new_route(
    state: &mut State,
    ns: u32,
    m: &netlink_packet_route::route::RouteMessage,
    flags: u16,
) -> Answer {
    let route = route_from_message(m).ok_or(EINVAL)?;
    if let Some(oif) = route.oif {
        get(state, ns, oif).ok_or(ENODEV)?;
    }
    let n = state.ns_mut(ns).ok_or(EINVAL)?;
    if let Some(gw) = route.gw {
        // The gateway must be reachable directly out of the route's interface.
        let link_local =
            matches!(gw, std::net::IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        let on_link = n.routes.iter().any(|r| {
            r.gw.is_none() && r.dst.contains(&gw) && (route.oif.is_none() || r.oif == route.oif)
        });
        if !link_local && !on_link {
            return Err(ENETUNREACH);
        }
    }
    let same = |r: &Route| {
        r.dst == route.dst && r.table_id() == route.table_id() && r.metric == route.metric
    };
    if flags & NLM_F_EXCL != 0 && n.routes.iter().any(same) {
        return Err(EEXIST);
    }
    if flags & NLM_F_APPEND != 0 && n.routes.contains(&route) {
        return Err(EEXIST);
    }
    if flags & NLM_F_REPLACE != 0 {
        n.routes.retain(|r| !same(r));
    }
    n.routes.push(route);
    Ok(vec![])
}

fn new_redirect(state: &mut State, ns: u32, m: &TcMessage) -> Answer {
    let index = u32::try_from(m.header.index).map_err(|_| EINVAL)?;
    let parent = Handle::new(m.header.parent.major, m.header.parent.minor);
    let to = redirect_target(m).ok_or(EOPNOTSUPP)?;
    get(state, ns, to).ok_or(ENODEV)?;
    let n = state.ns_mut(ns).ok_or(EINVAL)?;
    // As the kernel: the qdisc whose handle has the parent's major number (`ffff:`,
    // `ffff:fff1` and `ffff:fff2` all name an ingress or clsact qdisc).
    let Some(qdisc) = n
        .qdiscs
        .iter()
        .find(|q| q.index == index && q.handle.major == parent.major)
    else {
        return Err(ENOENT);
    };
    // Its filters go when it goes, whatever parent they were added with.
    let parent = qdisc.parent;
    n.redirects.push(Redirect { index, parent, to });
    Ok(vec![])
}
