//! tap: a tap device in the container for a VM's NIC (upstream `plugins/main/tap`;
//! KubeVirt and Kata), optionally a port of a bridge *inside* the container's
//! namespace. Made through `/dev/net/tun` (`cni_net::tap`), persistent, with
//! `IFF_VNET_HDR` as upstream's netlink path; created directly under `CNI_IFNAME`
//! in the container (upstream: a temporary name, then a rename).

use cni_net::tap::TapSpec;
use cni_net::{LinkChange, LinkKind};
use cni_skel::{Command, Context, Plugin, Request};
use cni_types::result::Result as CniResult;
use cni_types::{Context as _, Error};
use serde::Deserialize;

use crate::pkg::child::{check_child, del_ipam_then_link, finish_add, ipam_only};
use crate::pkg::{Rollback, container_mac_or};

/// tap's own keys (`ipam` and `dns` are in `PluginConf`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    #[serde(rename = "multiQueue")]
    multi_queue: bool,
    mtu: i64,
    mac: String,
    owner: Option<u32>,
    group: Option<u32>,
    #[serde(rename = "selinuxContext")]
    selinux_context: String,
    /// A bridge in the container's namespace to enslave the tap to.
    bridge: String,
}

pub struct Tap;

impl Plugin for Tap {
    type Conf = Conf;

    fn name(&self) -> &str {
        "tap"
    }

    fn add(&self, args: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let conf = &args.plugin;
        let kernel = cx.kernel;
        let mtu = crate::pkg::mtu(conf.mtu)?;
        let mac = container_mac_or(args, &args.plugin.mac)?;
        let netns = kernel
            .open_netns(&args.netns)
            .context(format!("failed to open netns {:?}", args.netns))?;
        let mut container = kernel.netlink(&netns)?;
        let bridge = match conf.bridge.as_str() {
            "" => None,
            name => {
                let found = container.link_by_name(name)?;
                match found {
                    Some(link) if link.kind == LinkKind::Bridge => Some(link.index),
                    Some(_) => {
                        return Err(Error::internal(format!("{name:?} is not a bridge")));
                    }
                    None => {
                        return Err(Error::internal(format!(
                            "failed to find bridge {name:?} in the container's netns"
                        )));
                    }
                }
            }
        };
        let spec = TapSpec {
            name: &args.ifname,
            multi_queue: conf.multi_queue,
            vnet_hdr: true,
            owner: conf.owner,
            group: conf.group,
            selinux_context: Some(conf.selinux_context.as_str()).filter(|c| !c.is_empty()),
        };
        kernel
            .create_tap(&netns, &spec)
            .context("failed to create tap")?;
        let mut rollback = Rollback::default();
        rollback.push_link_removal_by_name(kernel, &netns, &args.ifname);
        let link = container.require_link(&args.ifname)?;
        container
            .change_link(
                link.index,
                &LinkChange {
                    mtu: (mtu != 0).then_some(mtu),
                    mac,
                    master: bridge.map(Some),
                    ..Default::default()
                },
            )
            .context(format!("failed to set up tap {:?}", args.ifname))?;
        // As the change made it (no second lookup); `finish_add` brings it up.
        let link = cni_net::Link {
            mtu: if mtu != 0 { mtu } else { link.mtu },
            mac: mac.map_or(link.mac, |m| cni_net::format_mac(&m)),
            master: bridge.or(link.master),
            ..link
        };
        let result = finish_add(
            cx,
            args,
            &netns,
            &mut container,
            &link,
            true,
            None,
            &mut rollback,
        )?;
        rollback.done();
        Ok(CniResult::V100(result))
    }

    fn del(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        del_ipam_then_link(args, cx)
    }

    /// As upstream: IPAM CHECK, then the addresses and routes of the interface.
    fn check(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        check_child(args, cx, LinkKind::Tun, true, |_, _| Ok(()))
    }

    fn gc(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        ipam_only(args, cx, Command::Gc)
    }

    fn status(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        ipam_only(args, cx, Command::Status)
    }
}
