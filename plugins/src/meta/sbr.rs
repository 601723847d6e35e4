//! sbr: source-based routing for the container interface (upstream
//! `plugins/meta/sbr`), a chained plugin. Traffic from each of the interface's
//! addresses is looked up in a routing table of its own, so replies leave by the
//! interface they belong to in a multi-homed container.
//!
//! ADD, per address of `CNI_IFNAME` in prevResult: a table (the first from 100 that
//! no rule or route uses), a rule `from IP lookup TABLE`, a default route via the
//! gateway (a static `gateways` entry, else prevResult's) and a copy of the
//! interface's main-table routes of that subnet; then the interface's main-table
//! routes are removed (or, with `addSourceHints`, kept as link routes with the
//! address as source). With `table`, only the rules are added, to that table. DEL
//! removes the rules whose source is an address of the interface; the tables'
//! routes go with the interface. Calls on one namespace are serialised by a lock on
//! its file.
//!
//! Beyond upstream (`docs/differences.md`): a missing namespace file is never
//! created (upstream's lock creates it, then fails); a failed ADD undoes its rules
//! and routes; CHECK looks for the rules.

use std::net::IpAddr;

use cni_net::rtnl::route::TABLE_MAIN;
use cni_net::{Family, Kernel, Link, NetNs, Netlink, Route, Rule, Scope};
use cni_skel::{Context, Plugin, Request};
use cni_types::net::IpNet;
use cni_types::result::{Result as CniResult, v100};
use cni_types::{Error, Errors};
use serde::Deserialize;

use crate::pkg::Rollback;

/// The first table sbr picks.
const FIRST_TABLE: u32 = 100;

/// sbr's own keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    table: Option<i64>,
    gateways: Vec<String>,
    #[serde(rename = "addSourceHints")]
    add_source_hints: bool,
}

/// The validated configuration.
struct Settings {
    table: Option<u32>,
    /// At most one per family.
    gateways: Vec<IpAddr>,
    add_source_hints: bool,
}

impl Settings {
    fn load(conf: &Conf) -> Result<Settings, Error> {
        let table =
            conf.table
                .map(|t| {
                    u32::try_from(t).ok().filter(|t| *t > 0).ok_or_else(|| {
                        Error::internal(format!("invalid table {t}: 1 to 4294967295"))
                    })
                })
                .transpose()?;
        if conf.gateways.len() > 2 {
            return Err(Error::internal(
                "gateways list cannot contain more than 2 entries",
            ));
        }
        let mut gateways: Vec<IpAddr> = Vec::new();
        for text in &conf.gateways {
            let gw: IpAddr = text.parse().map_err(|_| {
                Error::internal(format!("invalid static gateway IP address: {text}"))
            })?;
            if gateways.iter().any(|g| g.is_ipv4() == gw.is_ipv4()) {
                return Err(Error::internal(format!(
                    "gateways list cannot contain multiple {} addresses",
                    if gw.is_ipv4() { "IPv4" } else { "IPv6" }
                )));
            }
            gateways.push(gw);
        }
        Ok(Settings {
            table,
            gateways,
            add_source_hints: conf.add_source_hints,
        })
    }

    /// The gateway of `ip`'s family: the static one, else prevResult's.
    fn gateway(&self, ip: &v100::IpConfig) -> Option<IpAddr> {
        self.gateways
            .iter()
            .copied()
            .find(|g| g.is_ipv4() == ip.address.addr().is_ipv4())
            .or(ip.gateway)
    }
}

/// The addresses of prevResult on `ifname` (an address without an interface
/// counts, as upstream).
fn ip_configs(prev: &v100::Result, ifname: &str) -> Result<Vec<v100::IpConfig>, Error> {
    if prev.ips.is_empty() {
        return Err(Error::internal(format!(
            "No IP addresses supplied on interface: {ifname}"
        )));
    }
    Ok(prev
        .ips
        .iter()
        .filter(|ip| {
            ip.interface
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| prev.interfaces.get(i))
                .is_none_or(|interface| interface.name == ifname)
        })
        .cloned()
        .collect())
}

fn host(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

fn default_route(gw: IpAddr, oif: u32, table: u32) -> Route {
    let any = if gw.is_ipv4() {
        IpNet::new(IpAddr::from([0u8; 4]), 0)
    } else {
        IpNet::new(IpAddr::from([0u16; 8]), 0)
    };
    Route {
        table,
        ..Route::new(any.unwrap_or_else(|_| host(gw)), Some(gw), oif)
    }
}

fn all_rules(netlink: &mut Netlink) -> cni_net::Result<Vec<Rule>> {
    let mut rules = netlink.rules(Family::V4)?;
    rules.extend(netlink.rules(Family::V6)?);
    Ok(rules)
}

fn all_routes(netlink: &mut Netlink) -> cni_net::Result<Vec<Route>> {
    let mut routes = netlink.routes(Family::V4)?;
    routes.extend(netlink.routes(Family::V6)?);
    Ok(routes)
}

/// Whether `route` belongs with address `ip`: its source or gateway is in the
/// address's subnet, or it has neither.
fn belongs_to(route: &Route, ip: &IpNet) -> bool {
    let subnet = ip.trunc();
    match (route.src, route.gw) {
        (None, None) => true,
        (src, gw) => {
            src.is_some_and(|a| subnet.contains(&a)) || gw.is_some_and(|a| subnet.contains(&a))
        }
    }
}

/// Upstream's ADD without `table`: a table per address, routes moved there.
fn route_by_source<'a>(
    settings: &Settings,
    ips: &[v100::IpConfig],
    link: &Link,
    netlink: &mut Netlink,
    rollback: &mut Rollback<'a>,
    (kernel, netns): (&'a Kernel, &'a NetNs),
) -> Result<(), Error> {
    let undo = |step: Undo| move || step.apply(kernel, netns);
    let rules = all_rules(netlink)?;
    let routes = all_routes(netlink)?;
    let main: Vec<Route> = routes
        .iter()
        .filter(|r| r.oif == Some(link.index) && r.table_id() == TABLE_MAIN)
        .cloned()
        .collect();
    let used =
        |t: u32| rules.iter().any(|r| r.table == t) || routes.iter().any(|r| r.table_id() == t);
    let mut table = FIRST_TABLE;
    for ip in ips {
        while used(table) {
            table += 1;
        }
        let rule = Rule::from_source(host(ip.address.addr()), table);
        netlink.add_rule(&rule)?;
        rollback.push(undo(Undo::Rule(rule)));
        let gateway = settings.gateway(ip);
        if let Some(gw) = gateway {
            let route = default_route(gw, link.index, table);
            netlink.replace_route(&route).map_err(|e| {
                Error::internal(format!("Failed to add default route to {gw}: {e}"))
            })?;
            rollback.push(undo(Undo::Added(route)));
        }
        // The table's default route is the gateway's: a main default route copied
        // over it would undo a static `gateways` entry.
        let copied = main.iter().filter(|r| {
            belongs_to(r, &ip.address) && !(gateway.is_some() && r.dst.prefix_len() == 0)
        });
        for route in copied {
            let copy = Route {
                table,
                ..route.clone()
            };
            netlink.replace_route(&copy)?;
            rollback.push(undo(Undo::Added(copy)));
        }
        table += 1;
    }
    if settings.add_source_hints {
        for ip in ips {
            let hint = Route {
                src: Some(ip.address.addr()),
                scope: Scope::Link,
                ..Route::new(ip.address.trunc(), None, link.index)
            };
            netlink.replace_route(&hint)?;
        }
    }
    for route in main
        .iter()
        .filter(|r| !settings.add_source_hints || r.scope != Scope::Link)
    {
        match netlink.del_route(route) {
            Err(e) if !e.already_gone() => return Err(e.into()),
            _ => rollback.push(undo(Undo::Deleted(route.clone()))),
        }
    }
    Ok(())
}

/// What a failed ADD takes back.
enum Undo {
    Rule(Rule),
    Added(Route),
    Deleted(Route),
}

impl Undo {
    fn apply(self, kernel: &Kernel, netns: &NetNs) {
        let Ok(mut netlink) = kernel.netlink(netns) else {
            return;
        };
        let _ = match self {
            Undo::Rule(rule) => netlink.del_rule(&rule),
            Undo::Added(route) => netlink.del_route(&route),
            Undo::Deleted(route) => netlink.replace_route(&route),
        };
    }
}

pub struct Sbr;

impl Plugin for Sbr {
    type Conf = Conf;

    fn name(&self) -> &str {
        "sbr"
    }

    fn add(&self, req: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let settings = Settings::load(&req.plugin)?;
        let prev = req
            .prev_result()?
            .ok_or_else(|| Error::internal("This plugin must be called as chained plugin"))?;
        let ips = ip_configs(&prev, &req.ifname)?;
        let netns = cx.kernel.open_netns(&req.netns)?;
        let _lock = cx.kernel.lock_netns(&req.netns)?;
        let mut netlink = cx.kernel.netlink(&netns)?;
        let link = netlink.link_by_name(&req.ifname)?.ok_or_else(|| {
            Error::internal(format!("Cannot find network interface {}", req.ifname))
        })?;
        let mut rollback = Rollback::default();
        match settings.table {
            Some(table) => {
                for ip in &ips {
                    let rule = Rule::from_source(host(ip.address.addr()), table);
                    netlink.add_rule(&rule)?;
                    let (kernel, netns) = (cx.kernel, &netns);
                    rollback.push(move || Undo::Rule(rule).apply(kernel, netns));
                }
            }
            None => route_by_source(
                &settings,
                &ips,
                &link,
                &mut netlink,
                &mut rollback,
                (cx.kernel, &netns),
            )?,
        }
        rollback.done();
        Ok(CniResult::V100(prev))
    }

    /// Removes the rules whose source is an address of the interface (only those
    /// to `table` when it is set). A namespace or interface that is gone leaves
    /// nothing to remove.
    fn del(&self, req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        // Only `table` matters here; a config ADD would refuse does not stop a DEL.
        let table = req.plugin.table.and_then(|t| u32::try_from(t).ok());
        if req.netns.is_empty() {
            return Ok(());
        }
        let netns = match cx.kernel.open_netns(&req.netns) {
            Err(e) if e.already_gone() => return Ok(()),
            other => other?,
        };
        let _lock = cx.kernel.lock_netns(&req.netns)?;
        let mut netlink = cx.kernel.netlink(&netns)?;
        let Some(link) = netlink.link_by_name(&req.ifname)? else {
            return Ok(());
        };
        let addresses: Vec<IpAddr> = netlink
            .addresses(link.index)?
            .iter()
            .map(|a| a.address.addr())
            .collect();
        let mut errors = Errors::new();
        for rule in all_rules(&mut netlink)? {
            let ours = rule.src.is_some_and(|s| addresses.contains(&s.addr()))
                && table.is_none_or(|t| t == rule.table);
            if ours {
                match netlink.del_rule(&rule) {
                    Err(e) if !e.already_gone() => {
                        errors.record::<Error>(Err(e.context("Failed to delete rule").into()))
                    }
                    _ => {}
                }
            }
        }
        errors.into_result()
    }

    /// Each address has its rule (upstream's CHECK checks nothing).
    fn check(&self, req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let settings = Settings::load(&req.plugin)?;
        let prev = req.require_prev_result()?;
        let ips = ip_configs(&prev, &req.ifname)?;
        let netns = cx.kernel.open_netns(&req.netns)?;
        let rules = all_rules(&mut cx.kernel.netlink(&netns)?)?;
        for ip in &ips {
            let source = host(ip.address.addr());
            if !rules
                .iter()
                .any(|r| r.src == Some(source) && settings.table.is_none_or(|t| t == r.table))
            {
                return Err(Error::internal(format!(
                    "no source-based routing rule for {}",
                    ip.address.addr()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
