//! loopback: brings `lo` up in the container (upstream `plugins/main/loopback`).
//!
//! ADD sets `lo` up and reports its addresses, or passes a `prevResult` through
//! unchanged; DEL sets it down and succeeds when the netns is already gone; CHECK
//! verifies that it is up. `CNI_IFNAME` is ignored: this plugin only ever touches `lo`.

use cni_net::Netlink;
use cni_skel::{Context, Plugin, Request};
use cni_types::Error;
use cni_types::result::{Result as CniResult, parse_prev_result, v100};
use serde::Deserialize;

/// loopback has no keys of its own; only a chained `prevResult` (a common key) matters.
#[derive(Debug, Default, Deserialize)]
pub struct Conf {}

pub struct Loopback;

const LO: &str = "lo";

impl Plugin for Loopback {
    type Conf = Conf;

    fn name(&self) -> &str {
        "loopback"
    }

    fn add(&self, args: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let netns = cx.kernel.open_netns(&args.netns)?;
        let mut netlink = cx.kernel.netlink(&netns)?;
        let lo = lo_link(&mut netlink)?;
        netlink.set_link_up(lo.index, true)?;
        let addresses = netlink.addresses(lo.index)?;
        if let Some(other) = addresses.iter().find(|a| !a.address.addr().is_loopback()) {
            return Err(Error::internal(format!(
                "loopback interface found with non-loopback address {:?}",
                other.address.addr().to_string()
            )));
        }

        // Chained after another plugin, loopback passes its result through unchanged.
        if let Some(prev) = args.conf.prev_result.clone() {
            return parse_prev_result(&args.cni_version, prev).map_err(Error::internal);
        }
        let first = |v4: bool| addresses.iter().find(|a| a.address.addr().is_ipv4() == v4);
        let ips = [first(true), first(false)]
            .into_iter()
            .flatten()
            .map(|a| v100::IpConfig {
                interface: Some(0),
                address: a.address,
                gateway: None,
            })
            .collect();
        Ok(CniResult::V100(v100::Result {
            cni_version: cni_types::version::CURRENT.into(),
            interfaces: vec![v100::Interface {
                name: LO.into(),
                mac: "00:00:00:00:00:00".into(),
                sandbox: args.netns.clone(),
                ..Default::default()
            }],
            ips,
            ..Default::default()
        }))
    }

    fn del(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        if args.netns.is_empty() {
            return Ok(());
        }
        let netns = match cx.kernel.open_netns(&args.netns) {
            // The runtime may call DEL again, or after the netns is gone: nothing to do.
            Err(e) if e.already_gone() => return Ok(()),
            other => other?,
        };
        let mut netlink = cx.kernel.netlink(&netns)?;
        let lo = lo_link(&mut netlink)?;
        Ok(netlink.set_link_up(lo.index, false)?)
    }

    fn check(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let netns = cx.kernel.open_netns(&args.netns)?;
        let mut netlink = cx.kernel.netlink(&netns)?;
        if !lo_link(&mut netlink)?.up {
            return Err(Error::internal("loopback interface is down"));
        }
        Ok(())
    }
}

fn lo_link(netlink: &mut Netlink) -> Result<cni_net::Link, Error> {
    netlink
        .link_by_name(LO)?
        .ok_or_else(|| Error::internal("Link not found"))
}
