//! `sample`: the smallest real plugin, to copy when writing a new one
//! (docs/writing-a-plugin.md walks through it).
//!
//! It puts one configured address on the container's loopback (a service or
//! anycast address every process in the pod can bind), chained after any other
//! plugin or alone:
//!
//! ```json
//! { "cniVersion": "1.1.0", "name": "svc", "type": "sample", "address": "192.0.2.10/32" }
//! ```
//!
//! ADD adds it (an address that is already there is fine), DEL removes it (gone, or
//! the whole namespace gone, is fine), CHECK looks for it, STATUS and GC have nothing
//! to do. The result is prevResult with the address added, or a new one naming `lo`.

use cni_net::{Kernel, NetNs};
use cni_skel::{Context, Plugin, Request};
use cni_types::net::IpNet;
use cni_types::result::{Result as CniResult, v100};
use cni_types::{Context as _, Error};
use serde::Deserialize;

/// The plugin's own keys; `name`, `cniVersion`, `prevResult` and the other common
/// keys are already decoded in `Request::conf`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    /// The address for the loopback, with its prefix length.
    address: String,
}

impl Conf {
    /// Every bad value is a clear error before anything is changed.
    fn address(&self) -> Result<IpNet, Error> {
        if self.address.is_empty() {
            return Err(Error::internal("\"address\" is required"));
        }
        self.address
            .parse()
            .map_err(|e| Error::internal(format!("invalid address {:?}: {e}", self.address)))
    }
}

pub struct Sample;

/// The container's loopback: a socket in the container's namespace and its index.
fn loopback(kernel: &Kernel, netns: &NetNs) -> Result<(cni_net::Netlink, u32), Error> {
    let mut netlink = kernel.netlink(netns)?;
    let lo = netlink.require_link("lo")?;
    Ok((netlink, lo.index))
}

fn open(kernel: &Kernel, path: &str) -> Result<NetNs, Error> {
    kernel
        .open_netns(path)
        .context(format!("failed to open netns {path:?}"))
}

impl Plugin for Sample {
    type Conf = Conf;

    fn name(&self) -> &str {
        "sample"
    }

    fn add(&self, args: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let address = args.plugin.address()?;
        let (mut netlink, lo) = loopback(cx.kernel, &open(cx.kernel, &args.netns)?)?;
        match netlink.add_address(lo, address, true) {
            // Errors are classified by cni-net; a plugin never compares errno values.
            Err(e) if !e.already_exists() => {
                return Err(e.context(format!("failed to add {address} to lo")).into());
            }
            _ => {}
        }
        // Chained: pass the previous result on, with the address; alone: name `lo`.
        let mut result = args.prev_result()?.unwrap_or_else(|| v100::Result {
            cni_version: cni_types::version::CURRENT.into(),
            interfaces: vec![v100::Interface {
                name: "lo".into(),
                sandbox: args.netns.clone(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let index = result.interfaces.iter().position(|i| i.name == "lo");
        result.ips.push(v100::IpConfig {
            interface: index.map(|i| i as i64),
            address,
            gateway: None,
        });
        Ok(CniResult::V100(result))
    }

    fn del(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let address = args.plugin.address()?;
        if args.netns.is_empty() {
            return Ok(());
        }
        let netns = match cx.kernel.open_netns(&args.netns) {
            Ok(netns) => netns,
            // The namespace is gone, and the address with it.
            Err(e) if e.already_gone() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let (mut netlink, lo) = loopback(cx.kernel, &netns)?;
        match netlink.del_address(lo, address) {
            Err(e) if !e.already_gone() => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn check(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let address = args.plugin.address()?;
        let (mut netlink, lo) = loopback(cx.kernel, &open(cx.kernel, &args.netns)?)?;
        if netlink.addresses(lo)?.iter().any(|a| a.address == address) {
            Ok(())
        } else {
            Err(Error::internal(format!("{address} is not on lo")))
        }
    }
}
