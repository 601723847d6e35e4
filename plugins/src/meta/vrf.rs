//! vrf: puts the container interface into a VRF inside the container's namespace
//! (upstream `plugins/meta/vrf`), a chained plugin.
//!
//! ADD finds the VRF `vrfname` or creates it (up, with `table`, or the lowest table
//! from 1 no other VRF uses) and enslaves `CNI_IFNAME` to it. Joining a VRF cycles
//! the interface, which drops its IPv6 addresses and its routes: the global IPv6
//! addresses are added back (and their routes awaited in the VRF's table), and the
//! routes made through the interface, ECMP ones included (upstream #1253), are added
//! to the VRF's table. DEL frees the interface and deletes the VRF once it has no
//! interface left. CHECK: the interface is in the VRF.
//!
//! Beyond upstream (`docs/differences.md`): a repeated ADD of an interface already
//! in this VRF converges instead of failing; a failed ADD frees the interface,
//! puts its addresses and routes back and removes a VRF it created.

use std::time::Duration;

use cni_net::rtnl::route::TABLE_MAIN;
use cni_net::{
    Family, KindData, KindSpec, Link, LinkChange, LinkKind, LinkSpec, NetNs, Netlink, Route, Scope,
};
use cni_skel::{Context, Plugin, Request};
use cni_types::Error;
use cni_types::net::IpNet;
use cni_types::result::Result as CniResult;
use serde::Deserialize;

use crate::pkg::Rollback;

/// vrf's own keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    vrfname: String,
    table: u32,
}

/// The VRF's table, as the kernel reports it.
fn table_of(vrf: &Link) -> u32 {
    match vrf.data {
        KindData::Vrf(table) => table,
        _ => 0,
    }
}

/// The lowest table from 1 that no VRF of the namespace uses.
fn free_table(links: &[Link]) -> u32 {
    let used: Vec<u32> = links
        .iter()
        .filter(|l| l.kind == LinkKind::Vrf)
        .map(table_of)
        .collect();
    (1..).find(|t| !used.contains(t)).unwrap_or(1)
}

/// What joining the VRF takes from the interface: its global IPv6 addresses and
/// the routes made through it in main.
struct Saved {
    addresses: Vec<IpNet>,
    routes: Vec<Route>,
}

impl Saved {
    fn of(netlink: &mut Netlink, link: &Link) -> cni_net::Result<Saved> {
        let addresses = netlink
            .addresses(link.index)?
            .into_iter()
            .filter(|a| a.address.addr().is_ipv6() && a.scope == Scope::Universe)
            .map(|a| a.address)
            .collect();
        let mut routes = netlink.routes(Family::V4)?;
        routes.extend(netlink.routes(Family::V6)?);
        // Every route a plugin made through the link (upstream keeps the universe
        // ones only, and so loses a gateway's link route, as ptp makes), the ones
        // without a gateway first: they make the gateways reachable.
        routes.retain(|r| r.uses_link(link.index) && r.table_id() == TABLE_MAIN && !r.kernel);
        routes.sort_by_key(|r| r.gw.is_some() || !r.nexthops.is_empty());
        Ok(Saved { addresses, routes })
    }

    /// Puts the addresses back (without a second duplicate address detection) and
    /// the routes into `table`.
    fn restore(&self, netlink: &mut Netlink, index: u32, table: u32) -> cni_net::Result<()> {
        let present: Vec<IpNet> = netlink
            .addresses(index)?
            .into_iter()
            .map(|a| a.address)
            .collect();
        for address in self.addresses.iter().filter(|a| !present.contains(a)) {
            match netlink.add_address(index, *address, true) {
                Err(e) if !e.already_exists() => return Err(e),
                _ => {}
            }
        }
        for route in &self.routes {
            let moved = Route {
                table,
                ..route.clone()
            };
            netlink.replace_route(&moved)?;
        }
        Ok(())
    }
}

/// Waits for the connected route of each address to appear in `table` (the kernel
/// adds it when the address comes back): 10 ms, doubling, 9 tries, as upstream.
fn await_routes(netlink: &mut Netlink, addresses: &[IpNet], table: u32) -> Result<(), Error> {
    let mut wait = Duration::from_millis(10);
    for attempt in 0..9 {
        let routes = netlink.routes(Family::V6)?;
        let missing = addresses.iter().find(|a| {
            !routes
                .iter()
                .any(|r| r.table_id() == table && r.dst == a.trunc())
        });
        let Some(missing) = missing else {
            return Ok(());
        };
        if attempt == 8 {
            return Err(Error::internal(format!(
                "failed to find the route of {missing} in VRF table {table}"
            )));
        }
        std::thread::sleep(wait);
        wait *= 2;
    }
    Ok(())
}

fn find_vrf(links: &[Link], name: &str) -> Result<Option<Link>, Error> {
    match links.iter().find(|l| l.name == name) {
        Some(link) if link.kind != LinkKind::Vrf => Err(Error::internal(format!(
            "link {name} already exists and is not a VRF"
        ))),
        found => Ok(found.cloned()),
    }
}

fn wrapped(e: impl Into<Error>) -> Error {
    let e = e.into();
    Error {
        msg: format!("cmdAdd failed: {}", e.msg),
        ..e
    }
}

pub struct Vrf;

impl Vrf {
    fn attach(&self, req: &Request<Conf>, cx: &Context, netns: &NetNs) -> Result<(), Error> {
        let conf = &req.plugin;
        let mut netlink = cx.kernel.netlink(netns)?;
        let links = netlink.links()?;
        let link = links
            .iter()
            .find(|l| l.name == req.ifname)
            .cloned()
            .ok_or_else(|| Error::internal(format!("failed to find link {}", req.ifname)))?;
        let mut rollback = Rollback::default();
        let vrf = match find_vrf(&links, &conf.vrfname)? {
            Some(vrf) => {
                if conf.table != 0 && table_of(&vrf) != conf.table {
                    return Err(Error::internal(format!(
                        "VRF {} already exist with different routing table {}",
                        conf.vrfname,
                        table_of(&vrf)
                    )));
                }
                vrf
            }
            None => {
                let table = match conf.table {
                    0 => free_table(&links),
                    table => table,
                };
                let spec = LinkSpec {
                    up: true,
                    ..LinkSpec::new(&conf.vrfname, KindSpec::Vrf { table })
                };
                let vrf = match netlink.create_link(&spec)? {
                    Some(vrf) => vrf,
                    None => netlink.require_link(&conf.vrfname)?,
                };
                rollback.push_link_removal(cx.kernel, netns, vrf.index);
                Link {
                    data: KindData::Vrf(table),
                    ..vrf
                }
            }
        };
        match link.master {
            Some(master) if master == vrf.index => return Ok(()),
            Some(master) => {
                let name = links
                    .iter()
                    .find(|l| l.index == master)
                    .map(|l| l.name.clone())
                    .unwrap_or_else(|| master.to_string());
                return Err(Error::internal(format!(
                    "interface {} has already a master set: {name}",
                    req.ifname
                )));
            }
            None => {}
        }
        let saved = Saved::of(&mut netlink, &link)?;
        netlink.change_link(
            link.index,
            &LinkChange {
                master: Some(Some(vrf.index)),
                ..Default::default()
            },
        )?;
        let (kernel, index) = (cx.kernel, link.index);
        let undo = Saved {
            addresses: saved.addresses.clone(),
            routes: saved.routes.clone(),
        };
        rollback.push(move || {
            if let Ok(mut netlink) = kernel.netlink(netns) {
                let free = LinkChange {
                    master: Some(None),
                    ..Default::default()
                };
                let _ = netlink.change_link(index, &free);
                let _ = undo.restore(&mut netlink, index, TABLE_MAIN);
            }
        });
        let table = table_of(&vrf);
        saved.restore(&mut netlink, link.index, table)?;
        await_routes(&mut netlink, &saved.addresses, table)?;
        rollback.done();
        Ok(())
    }
}

impl Plugin for Vrf {
    type Conf = Conf;

    fn name(&self) -> &str {
        "vrf"
    }

    /// From 0.3.1, as upstream.
    fn supported_versions(&self) -> &[&'static str] {
        &cni_types::version::ALL[3..]
    }

    fn add(&self, req: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        if req.plugin.vrfname.is_empty() {
            return Err(Error::internal(
                "configuration is expected to have a valid vrf name",
            ));
        }
        let prev = req
            .prev_result()?
            .ok_or_else(|| Error::internal("missing prevResult from earlier plugin"))?;
        let netns = cx.kernel.open_netns(&req.netns).map_err(wrapped)?;
        self.attach(req, cx, &netns).map_err(wrapped)?;
        Ok(CniResult::V100(prev))
    }

    /// Frees the interface and deletes the VRF when no interface is left in it; a
    /// namespace, VRF or interface already gone is fine.
    fn del(&self, req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let conf = &req.plugin;
        if req.netns.is_empty() || conf.vrfname.is_empty() {
            return Ok(());
        }
        let netns = match cx.kernel.open_netns(&req.netns) {
            Err(e) if e.already_gone() => return Ok(()),
            other => other?,
        };
        let mut netlink = cx.kernel.netlink(&netns)?;
        let links = netlink.links()?;
        let Some(vrf) = links
            .iter()
            .find(|l| l.name == conf.vrfname && l.kind == LinkKind::Vrf)
        else {
            return Ok(());
        };
        if let Some(link) = links
            .iter()
            .find(|l| l.name == req.ifname && l.master == Some(vrf.index))
        {
            let free = LinkChange {
                master: Some(None),
                ..Default::default()
            };
            match netlink.change_link(link.index, &free) {
                Err(e) if !e.already_gone() => return Err(e.into()),
                _ => {}
            }
        }
        let others = netlink.links()?.iter().any(|l| l.master == Some(vrf.index));
        if !others {
            // Another DEL may have removed it meanwhile (upstream #1282).
            match netlink.delete_link(vrf.index) {
                Err(e) if !e.already_gone() => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    fn check(&self, req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let conf = &req.plugin;
        req.require_prev_result()?;
        let netns = cx.kernel.open_netns(&req.netns)?;
        let links = cx.kernel.netlink(&netns)?.links()?;
        let vrf = find_vrf(&links, &conf.vrfname)?
            .ok_or_else(|| Error::internal(format!("failed to find VRF {}", conf.vrfname)))?;
        let enslaved = links
            .iter()
            .any(|l| l.name == req.ifname && l.master == Some(vrf.index));
        if !enslaved {
            return Err(Error::internal(format!(
                "interface {} is not enslaved to VRF {}",
                req.ifname, conf.vrfname
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
