//! loopback: brings `lo` up in the container (upstream `plugins/main/loopback`).
//!
//! ADD sets `lo` up and reports its addresses, or passes a `prevResult` through
//! unchanged; DEL sets it down and succeeds when the netns is already gone; CHECK
//! verifies that it is up. `CNI_IFNAME` is ignored: this plugin only ever touches `lo`.

use cni_net::{NetError, NetNs, Netlink};
use cni_skel::{CmdArgs, Plugin};
use cni_types::Error;
use cni_types::result::{Result as CniResult, parse_prev_result, v100};
use serde::Deserialize;
use serde_json::Value;

use crate::net_error;

/// loopback has no keys of its own; only a chained `prevResult` matters.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Conf {
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
}

pub struct Loopback;

const LO: &str = "lo";

impl Plugin for Loopback {
    fn name(&self) -> &str {
        "loopback"
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult, Error> {
        let conf: Conf = args.config()?;
        let netns = NetNs::open(&args.netns).map_err(net_error)?;
        let mut netlink = Netlink::open_in(&netns).map_err(net_error)?;
        let lo = lo_link(&mut netlink)?;
        netlink.set_link_up(lo.index, true).map_err(net_error)?;
        let addresses = netlink.addresses(lo.index).map_err(net_error)?;
        if let Some(other) = addresses.iter().find(|a| !a.address.addr().is_loopback()) {
            return Err(Error::internal(format!(
                "loopback interface found with non-loopback address {:?}",
                other.address.addr().to_string()
            )));
        }

        // Chained after another plugin, loopback passes its result through unchanged.
        if let Some(prev) = conf.prev_result {
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

    fn del(&self, args: &CmdArgs) -> Result<(), Error> {
        if args.netns.is_empty() {
            return Ok(());
        }
        let netns = match NetNs::open(&args.netns) {
            // The runtime may call DEL again, or after the netns is gone: nothing to do.
            Err(NetError::NetnsNotFound(_)) => return Ok(()),
            other => other.map_err(net_error)?,
        };
        let mut netlink = Netlink::open_in(&netns).map_err(net_error)?;
        let lo = lo_link(&mut netlink)?;
        netlink.set_link_up(lo.index, false).map_err(net_error)
    }

    fn check(&self, args: &CmdArgs) -> Result<(), Error> {
        let netns = NetNs::open(&args.netns).map_err(net_error)?;
        let mut netlink = Netlink::open_in(&netns).map_err(net_error)?;
        if !lo_link(&mut netlink)?.up {
            return Err(Error::internal("loopback interface is down"));
        }
        Ok(())
    }
}

fn lo_link(netlink: &mut Netlink) -> Result<cni_net::Link, Error> {
    netlink
        .link_by_name(LO)
        .map_err(net_error)?
        .ok_or_else(|| Error::internal("Link not found"))
}
