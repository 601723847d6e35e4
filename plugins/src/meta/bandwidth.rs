//! bandwidth: limits the container's traffic with token buckets on the host side of
//! its veth (upstream `plugins/meta/bandwidth`, the tbf shape of v1.1.x), a chained
//! plugin after a veth-based main plugin (bridge, ptp).
//!
//! Ingress (to the container) is a root `tbf 1:` on the host veth. Egress (from the
//! container) enters the host veth, so its `ingress` qdisc redirects every packet
//! (u32 match-all, `mirred egress redirect`) to an ifb device `bwp<hash>` whose root
//! `tbf 1:` shapes it. Rates are bits/s, bursts bits; the tbf parameters are
//! computed as upstream's, from `/proc/net/psched`, so either implementation's CHECK
//! accepts the other's qdiscs, and DEL (the ifb by name) undoes either's ADD.
//!
//! Beyond upstream (`docs/differences.md`): an `ingress` or `clsact` qdisc another
//! tool put on the host veth is used instead of failing with "file exists"; a failed
//! ADD removes what it added; the ifb carries an alias naming its network and
//! container, so GC removes the ifbs of this network's containers that are gone.

use std::collections::BTreeSet;

use cni_net::netfilter::hashed_name;
use cni_net::{
    Handle, KindSpec, Link, LinkChange, LinkKind, LinkSpec, Netlink, Qdisc, QdiscKind, Redirect,
    Tbf,
};
use cni_skel::{Context, Plugin, Request};
use cni_types::Error;
use cni_types::result::{Result as CniResult, v100};
use serde::Deserialize;

use crate::pkg::Rollback;

/// bandwidth's own keys: the limits, or the `bandwidth` capability's.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    #[serde(rename = "ingressRate")]
    ingress_rate: Option<u64>,
    #[serde(rename = "ingressBurst")]
    ingress_burst: Option<u64>,
    #[serde(rename = "egressRate")]
    egress_rate: Option<u64>,
    #[serde(rename = "egressBurst")]
    egress_burst: Option<u64>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: RuntimeConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeConfig {
    bandwidth: Option<Limits>,
}

/// Rates in bits per second, bursts in bits; 0 is no limit.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq)]
#[serde(default)]
struct Limits {
    #[serde(rename = "ingressRate")]
    ingress_rate: u64,
    #[serde(rename = "ingressBurst")]
    ingress_burst: u64,
    #[serde(rename = "egressRate")]
    egress_rate: u64,
    #[serde(rename = "egressBurst")]
    egress_burst: u64,
}

/// The tbf's latency, as upstream's: the queue holds 25 ms at the rate.
const LATENCY_MS: f64 = 25.0;
const IFB_PREFIX: &str = "bwp";
/// `IFNAMSIZ - 1`.
const IFB_NAME_LEN: usize = 15;

impl Conf {
    /// The static limits when the config has any of the four keys (even as 0),
    /// else the capability's (upstream: the embedded entry wins when present).
    fn limits(&self) -> Result<Option<Limits>, Error> {
        let has_static = self.ingress_rate.is_some()
            || self.ingress_burst.is_some()
            || self.egress_rate.is_some()
            || self.egress_burst.is_some();
        let limits = if has_static {
            Some(Limits {
                ingress_rate: self.ingress_rate.unwrap_or(0),
                ingress_burst: self.ingress_burst.unwrap_or(0),
                egress_rate: self.egress_rate.unwrap_or(0),
                egress_burst: self.egress_burst.unwrap_or(0),
            })
        } else {
            self.runtime_config.bandwidth
        };
        if let Some(l) = &limits {
            validate(l.ingress_rate, l.ingress_burst)?;
            validate(l.egress_rate, l.egress_burst)?;
        }
        Ok(limits.filter(|l| *l != Limits::default()))
    }
}

fn validate(rate: u64, burst: u64) -> Result<(), Error> {
    let message = match () {
        _ if burst == 0 && rate != 0 => "if rate is set, burst must also be set",
        _ if rate == 0 && burst != 0 => "if burst is set, rate must also be set",
        _ if burst / 8 >= u64::from(u32::MAX) => "burst cannot be more than 4GB",
        // Upstream divides by the rate in bytes, 0 below 8 bits/s.
        _ if rate != 0 && rate < 8 => "rate must be at least 8 bits per second",
        _ => return Ok(()),
    };
    Err(Error::internal(message))
}

/// Upstream's token bucket for `rate` bits/s and `burst` bits, with `ticks`
/// scheduler ticks per microsecond.
fn tbf(rate: u64, burst: u64, ticks: f64) -> Tbf {
    let rate = rate / 8;
    let burst = (burst / 8) as u32;
    let burst_us = (f64::from(burst) * 1e6 / rate as f64) as u32;
    let buffer = (f64::from(burst_us) * ticks) as u32;
    let latency_us = 1e6 * (LATENCY_MS / 1000.0);
    let limit = (rate as f64 * latency_us / 1e6) as u64 + u64::from(burst);
    Tbf {
        rate,
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
        buffer,
    }
}

/// `bwp` and the hash of network and container, as upstream names it.
fn ifb_name(network: &str, container_id: &str) -> String {
    hashed_name(IFB_PREFIX, network, container_id, IFB_NAME_LEN)
}

/// The ifb's alias, which GC reads.
fn ifb_alias(network: &str, container_id: &str) -> String {
    format!("cni bandwidth: net={network} id={container_id}")
}

fn root_tbf(index: u32, tbf: Tbf) -> Qdisc {
    Qdisc {
        index,
        handle: Handle::new(1, 0),
        parent: Handle::ROOT,
        kind: QdiscKind::Tbf(tbf),
    }
}

/// The container interface's veth peer in the host, which prevResult must list
/// (without a sandbox), in upstream's words when it is not found.
fn host_veth(
    req: &Request<Conf>,
    cx: &Context,
    prev: &v100::Result,
    host: &mut Netlink,
) -> Result<Link, Error> {
    let netns = cx.kernel.open_netns(&req.netns)?;
    let container = cx.kernel.netlink(&netns)?.link_by_name(&req.ifname)?;
    let peer = container
        .filter(|l| l.kind == LinkKind::Veth)
        .and_then(|l| l.parent)
        .ok_or_else(|| {
            Error::internal(format!(
                "container interface {} has no veth peer",
                req.ifname
            ))
        })?;
    let link = host
        .link_by_index(peer)?
        .ok_or_else(|| Error::internal(format!("veth peer with index {peer} is not in host ns")))?;
    if !prev
        .interfaces
        .iter()
        .any(|i| i.sandbox.is_empty() && i.name == link.name)
    {
        return Err(Error::internal(
            "no veth peer of container interface found in host ns",
        ));
    }
    Ok(link)
}

/// The handle a filter takes to hang below the host veth's ingress hook: ours or
/// another tool's `ingress` qdisc (`ffff:`), or a `clsact` one's ingress side.
fn ingress_parent(host: &mut Netlink, veth: u32) -> Result<Option<Handle>, Error> {
    Ok(host
        .qdiscs(veth)?
        .into_iter()
        .find(|q| q.parent == Handle::INGRESS)
        .map(|q| match q.kind {
            QdiscKind::Clsact => Handle::new(0xffff, 0xfff2),
            _ => Handle::new(0xffff, 0),
        }))
}

pub struct Bandwidth;

impl Plugin for Bandwidth {
    type Conf = Conf;

    fn name(&self) -> &str {
        "bandwidth"
    }

    /// From 0.3.0, as upstream.
    fn supported_versions(&self) -> &[&'static str] {
        &cni_types::version::ALL[2..]
    }

    fn add(&self, req: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let limits = req.plugin.limits()?;
        let prev = req.prev_result()?;
        let Some(limits) = limits else {
            return Ok(CniResult::V100(prev.unwrap_or_default()));
        };
        let mut result = prev.ok_or_else(|| Error::internal("must be called as chained plugin"))?;
        let mut host = cx.kernel.host()?;
        let veth = host_veth(req, cx, &result, &mut host)?;
        let ticks = cx.kernel.tc_ticks_per_usec()?;
        let mut rollback = Rollback::default();

        if limits.ingress_rate > 0 {
            let tbf = tbf(limits.ingress_rate, limits.ingress_burst, ticks);
            host.add_qdisc(&root_tbf(veth.index, tbf))?;
            let kernel = cx.kernel;
            rollback.push(move || {
                if let Ok(mut host) = kernel.host() {
                    let _ = host.del_qdisc(veth.index, Handle::ROOT);
                }
            });
        }
        if limits.egress_rate > 0 {
            let name = ifb_name(req.network(), &req.container_id);
            let spec = LinkSpec {
                mtu: veth.mtu,
                up: true,
                txqlen: Some(0),
                ..LinkSpec::new(&name, KindSpec::Ifb)
            };
            let ifb = match host.create_link(&spec)? {
                Some(link) => link,
                None => host.require_link(&name)?,
            };
            let (kernel, ifb_index) = (cx.kernel, ifb.index);
            rollback.push(move || {
                if let Ok(mut host) = kernel.host() {
                    let _ = host.delete_link(ifb_index);
                }
            });
            let alias = ifb_alias(req.network(), &req.container_id);
            host.change_link(
                ifb.index,
                &LinkChange {
                    alias: Some(&alias),
                    ..Default::default()
                },
            )?;
            let parent = match ingress_parent(&mut host, veth.index)? {
                Some(parent) => parent,
                None => {
                    host.add_qdisc(&Qdisc {
                        index: veth.index,
                        handle: Handle::new(0xffff, 0),
                        parent: Handle::INGRESS,
                        kind: QdiscKind::Ingress,
                    })?;
                    let kernel = cx.kernel;
                    rollback.push(move || {
                        if let Ok(mut host) = kernel.host() {
                            let _ = host.del_qdisc(veth.index, Handle::INGRESS);
                        }
                    });
                    Handle::new(0xffff, 0)
                }
            };
            host.add_redirect(&Redirect {
                index: veth.index,
                parent,
                to: ifb.index,
            })?;
            let tbf = tbf(limits.egress_rate, limits.egress_burst, ticks);
            host.add_qdisc(&root_tbf(ifb.index, tbf))?;
            result.interfaces.push(v100::Interface {
                name,
                mac: ifb.mac,
                ..Default::default()
            });
        }
        rollback.done();
        Ok(CniResult::V100(result))
    }

    /// Deletes the ifb by its name (the veth's qdiscs go with the veth), as
    /// upstream; no netns needed, and a missing ifb is success. Unlike upstream,
    /// limits ADD would refuse do not stop the DEL.
    fn del(&self, req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let mut host = cx.kernel.host()?;
        let name = ifb_name(req.network(), &req.container_id);
        if let Some(ifb) = host.link_by_name(&name)?
            && ifb.kind == LinkKind::Ifb
        {
            match host.delete_link(ifb.index) {
                Err(e) if !e.already_gone() => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// The tbfs must have the parameters the config gives, as upstream's CHECK.
    fn check(&self, req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let limits = req.plugin.limits()?;
        let prev = req
            .prev_result()?
            .ok_or_else(|| Error::internal("must be called as a chained plugin"))?;
        let mut host = cx.kernel.host()?;
        let veth = host_veth(req, cx, &prev, &mut host)?;
        let Some(limits) = limits else {
            return Ok(());
        };
        let ticks = cx.kernel.tc_ticks_per_usec()?;
        let mut wanted = Vec::new();
        if limits.ingress_rate > 0 {
            wanted.push((veth, tbf(limits.ingress_rate, limits.ingress_burst, ticks)));
        }
        if limits.egress_rate > 0 {
            let name = ifb_name(req.network(), &req.container_id);
            let ifb = host.link_by_name(&name)?.ok_or_else(|| {
                Error::internal(format!("get ifb device: {name}: Link not found"))
            })?;
            wanted.push((ifb, tbf(limits.egress_rate, limits.egress_burst, ticks)));
        }
        for (link, tbf) in wanted {
            let found = host
                .qdiscs(link.index)?
                .into_iter()
                .find_map(|q| match q.kind {
                    QdiscKind::Tbf(t) if q.parent == Handle::ROOT => Some(t),
                    _ => None,
                });
            let Some(found) = found else {
                return Err(Error::internal(format!(
                    "Failed to find tbf qdisc on {}",
                    link.name
                )));
            };
            for (what, have, want) in [
                ("Rate", found.rate, tbf.rate),
                ("Limit", u64::from(found.limit), u64::from(tbf.limit)),
                ("Burst", u64::from(found.buffer), u64::from(tbf.buffer)),
            ] {
                if have != want {
                    return Err(Error::internal(format!(
                        "{what} does not match on {} ({have} != {want})",
                        link.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Ready when tbf buffers can be computed (`/proc/net/psched` reads).
    fn status(&self, _req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        cx.kernel.tc_ticks_per_usec()?;
        Ok(())
    }

    /// Deletes the ifbs this network's ADDs made for containers not in
    /// `cni.dev/valid-attachments` (known by their alias; Go's have none and stay).
    fn gc(&self, req: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let valid: BTreeSet<String> = req
            .conf
            .valid_attachments
            .iter()
            .flatten()
            .map(|a| ifb_alias(req.network(), &a.container_id))
            .collect();
        let prefix = ifb_alias(req.network(), "");
        let mut host = cx.kernel.host()?;
        let mut errors = cni_types::Errors::new();
        for link in host.links()? {
            if link.kind == LinkKind::Ifb
                && link.name.starts_with(IFB_PREFIX)
                && link.alias.starts_with(&prefix)
                && !valid.contains(&link.alias)
            {
                match host.delete_link(link.index) {
                    Err(e) if !e.already_gone() => errors.record::<Error>(Err(e.into())),
                    _ => {}
                }
            }
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_buckets_are_upstreams() {
        // 1 Mbit/s with a 1 Mbit burst at 15.625 ticks/µs: 125000 B/s, a 125000 B
        // burst is 1 s = 15625000 ticks, and 25 ms at the rate is 3125 B.
        assert_eq!(
            tbf(1_000_000, 1_000_000, 15.625),
            Tbf {
                rate: 125_000,
                limit: 128_125,
                buffer: 15_625_000
            }
        );
        assert_eq!(ifb_name("net", "ctr").len(), 15);
        assert!(ifb_name("net", "ctr").starts_with("bwp"));
    }

    #[test]
    fn limits_validate_as_upstream_and_static_beats_runtime() {
        let conf = |json: &str| cni_types::gojson::from_slice::<Conf>(json.as_bytes()).unwrap();
        let err = |json: &str| conf(json).limits().unwrap_err().msg;
        assert_eq!(
            err(r#"{"ingressRate": 1000}"#),
            "if rate is set, burst must also be set"
        );
        assert_eq!(
            err(r#"{"egressBurst": 1000}"#),
            "if burst is set, rate must also be set"
        );
        assert_eq!(
            err(r#"{"ingressRate": 1000, "ingressBurst": 34359738368}"#),
            "burst cannot be more than 4GB"
        );
        let both = conf(
            r#"{"ingressRate": 0, "runtimeConfig": {"bandWidth": {"egressRate": 8000, "egressBurst": 800}}}"#,
        );
        assert_eq!(both.limits().unwrap(), None, "a static 0 wins");
        let runtime =
            conf(r#"{"runtimeConfig": {"bandWidth": {"egressRate": 8000, "egressBurst": 800}}}"#);
        assert_eq!(runtime.limits().unwrap().unwrap().egress_rate, 8000);
    }
}
