//! bridge: a veth pair from the container to a Linux bridge on the host, with
//! optional gateway address, masquerade, MAC spoof check and VLANs (upstream
//! `plugins/main/bridge`). The config keys are those of upstream, see
//! `docs/plugins/bridge.md`.

mod host;

use cni_net::iface::{VethRequest, configure_iface, setup_veth};
use cni_net::netfilter::spoofchk;
use cni_net::{Family, Link, LinkKind, Netlink};
use cni_skel::{Command, Context, Plugin, Request};
use cni_types::net::IpNet;
use cni_types::result::{Result as CniResult, v100};
use cni_types::{Context as _, Error};
use serde::Deserialize;

use crate::pkg::{
    ContainerLink, Rollback, check_addresses_and_routes, check_container_link, container_mac,
    del_beside_masq, ipam_add, ipam_verb, masq_backend, masq_owner, setup_masq, teardown_masq,
};
use host::{
    add_default_routes, attach_to_bridge, container_sysctls, ensure_address, ensure_bridge,
    first_host, gateway_link, wait_port_up,
};

const DEFAULT_BRIDGE: &str = "cni0";

/// bridge's own keys (the common ones, `ipam`, `dns`, `args` and `runtimeConfig`
/// among them, are in `PluginConf`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    bridge: String,
    #[serde(rename = "isGateway")]
    is_gateway: bool,
    #[serde(rename = "isDefaultGateway")]
    is_default_gateway: bool,
    #[serde(rename = "forceAddress")]
    force_address: bool,
    #[serde(rename = "ipMasq")]
    ip_masq: bool,
    #[serde(rename = "ipMasqBackend")]
    ip_masq_backend: Option<String>,
    mtu: i64,
    #[serde(rename = "hairpinMode")]
    hairpin_mode: bool,
    #[serde(rename = "promiscMode")]
    promisc_mode: bool,
    vlan: i64,
    #[serde(rename = "vlanTrunk")]
    vlan_trunk: Vec<Trunk>,
    #[serde(rename = "preserveDefaultVlan")]
    preserve_default_vlan: bool,
    macspoofchk: bool,
    enabledad: bool,
    #[serde(rename = "disableContainerInterface")]
    disable_container_interface: bool,
    #[serde(rename = "portIsolation")]
    port_isolation: bool,
    /// L3 mode iff `ipam.type` is set (a common key, copied here by [`Conf::load`]).
    #[serde(skip)]
    l3: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Trunk {
    id: Option<i64>,
    #[serde(rename = "minID")]
    min_id: Option<i64>,
    #[serde(rename = "maxID")]
    max_id: Option<i64>,
}

impl Conf {
    /// The request's bridge config with upstream's defaults and validation.
    fn load(req: &Request<Conf>) -> Result<Conf, Error> {
        let mut conf: Conf = req.env.config()?;
        conf.l3 = req.ipam_type().is_some();
        crate::pkg::mtu(conf.mtu)?;
        if conf.bridge.is_empty() {
            conf.bridge = DEFAULT_BRIDGE.into();
        }
        if conf.is_default_gateway {
            conf.is_gateway = true;
        }
        if conf.hairpin_mode && conf.promisc_mode {
            return Err(Error::internal(
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
        if !(0..=4094).contains(&conf.vlan) {
            return Err(Error::internal(format!(
                "invalid VLAN ID {} (must be between 0 and 4094)",
                conf.vlan
            )));
        }
        trunk_vids(&conf.vlan_trunk).map_err(Error::internal)?;
        if conf.disable_container_interface && conf.l3 {
            return Err(Error::internal(
                "cannot use IPAM when DisableContainerInterface flag is set",
            ));
        }
        Ok(conf)
    }

    /// Checked in [`Conf::load`].
    fn mtu(&self) -> u32 {
        u32::try_from(self.mtu).unwrap_or(0)
    }
}

/// The trunk VIDs, deduplicated and sorted, with upstream's validation texts.
fn trunk_vids(trunks: &[Trunk]) -> Result<Vec<u16>, String> {
    let mut vids = std::collections::BTreeSet::new();
    let valid = |v: i64| (1..=4094).contains(&v);
    for trunk in trunks {
        match (trunk.min_id, trunk.max_id) {
            (Some(min), Some(max)) => {
                if !valid(min) {
                    return Err("incorrect trunk minID parameter".into());
                }
                if !valid(max) {
                    return Err("incorrect trunk maxID parameter".into());
                }
                if max < min {
                    return Err("minID is greater than maxID in trunk parameter".into());
                }
                vids.extend(min..=max);
            }
            (None, Some(_)) => {
                return Err(
                    "minID and maxID should be configured simultaneously, minID is missing".into(),
                );
            }
            (Some(_), None) => {
                return Err(
                    "minID and maxID should be configured simultaneously, maxID is missing".into(),
                );
            }
            (None, None) => {}
        }
        if let Some(id) = trunk.id {
            if !valid(id) {
                return Err("incorrect trunk id parameter".into());
            }
            vids.insert(id);
        }
    }
    Ok(vids
        .into_iter()
        .filter_map(|v| u16::try_from(v).ok())
        .collect())
}

pub struct Bridge;

impl Plugin for Bridge {
    type Conf = Conf;

    fn name(&self) -> &str {
        "bridge"
    }

    /// Upstream's steps, in its order; everything made is undone if a later step fails.
    fn add(&self, args: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let conf = Conf::load(args)?;
        let kernel = cx.kernel;
        let mac = container_mac(args)?;
        let trunk = trunk_vids(&conf.vlan_trunk).map_err(Error::internal)?;
        // Started first: the firewall process loads while the interfaces are made.
        // The backend is ADD's to choose (DEL cleans both): an unusable one fails the
        // ADD here, before anything is made.
        let backend = match conf.l3 {
            true => masq_backend(conf.ip_masq, conf.ip_masq_backend.as_deref())?,
            false => None,
        };
        let masq = backend.map(cni_net::netfilter::masq::Pending::start);
        // Opened first: a missing netns fails the ADD before anything is made.
        let netns = kernel
            .open_netns(&args.netns)
            .context(format!("failed to open netns {:?}", args.netns))?;
        let mut rollback = Rollback::default();
        let mut host = kernel.host()?;
        let bridge = ensure_bridge(kernel, &mut host, &conf, &mut rollback)?;
        let mut container = kernel.netlink(&netns)?;
        let request = VethRequest {
            ifname: &args.ifname,
            mtu: conf.mtu(),
            mac,
            master: Some(bridge.index),
        };
        let veth = setup_veth(kernel, &mut host, &mut container, &netns, &request)?;
        let container_index = veth.container.index;
        rollback.push_link_removal(kernel, &netns, container_index);
        attach_to_bridge(&mut host, &veth.host, &conf, &trunk)?;
        let mut result = interfaces(&bridge, &veth.host, &veth.container, &args.netns);
        if conf.macspoofchk {
            kernel.require_firewall()?;
            spoofchk::SpoofCheck {
                host_iface: &veth.host.name,
                mac: &veth.container.mac,
                container_id: &args.container_id,
                ifname: &args.ifname,
            }
            .setup()?;
            rollback.push(|| {
                let _ = spoofchk::teardown(&args.container_id, &args.ifname);
            });
        }
        if let Some(ipam_type) = args.ipam_type() {
            let ipam = ipam_add(cx, ipam_type, args)?;
            rollback.push(move || {
                let _ = ipam_verb(cx, ipam_type, Command::Del, args);
            });
            set_addresses(&mut result, ipam, &conf)?;
            container_sysctls(kernel, &netns, &args.ifname, conf.enabledad);
            configure_iface(kernel, &netns, &mut container, &veth.container, &result)?;
            if conf.is_gateway {
                add_gateways(kernel, &mut host, &bridge, &conf, &result)?;
            }
            if let Some(pending) = masq {
                let owner = masq_owner(args.network(), args);
                setup_masq(kernel, pending, &result, owner, &mut rollback)?;
            }
        } else if !conf.disable_container_interface {
            container.set_link_up(veth.container.index, true)?;
        }
        if !conf.disable_container_interface {
            wait_port_up(&mut host, &veth.host)?;
        }
        // The bridge's MAC may have changed: it follows its ports until it gets an
        // address, which pins it.
        if let Some(link) = host.link_by_index(bridge.index)? {
            result.interfaces[0].mac = link.mac;
        }
        if !args.conf.dns.is_empty() {
            result.dns = args.conf.dns.clone();
        }
        rollback.done();
        Ok(CniResult::V100(result))
    }

    fn del(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let conf = Conf::load(args)?;
        let found = ContainerLink::find(cx.kernel, args)?;
        let masq = match conf.l3 && conf.ip_masq {
            true => Some(teardown_masq(cx.kernel, &found, args)?),
            false => None,
        };
        del_beside_masq(masq, || {
            if let Some(link) = found.into_link() {
                link.delete()?;
            }
            if let Some(ipam_type) = args.ipam_type() {
                ipam_verb(cx, ipam_type, Command::Del, args)?;
            }
            // Only when configured, as upstream: listing the bridge table is an `nft`
            // process, a third of a DEL without firewall work.
            if conf.macspoofchk
                && cx.kernel.require_firewall().is_ok()
                && let Err(e) = spoofchk::teardown(&args.container_id, &args.ifname)
            {
                eprintln!("failed to remove the MAC spoof check: {e}");
            }
            Ok(())
        })
    }

    fn check(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let conf = Conf::load(args)?;
        if let Some(ipam_type) = args.ipam_type() {
            ipam_verb(cx, ipam_type, Command::Check, args)?;
        }
        let prev = args.require_prev_result()?;
        let mut host = cx.kernel.host()?;
        let bridge = host
            .link_by_name(&conf.bridge)?
            .ok_or_else(|| Error::internal(format!("failed to find bridge {:?}", conf.bridge)))?;
        if bridge.kind != LinkKind::Bridge {
            return Err(Error::internal(format!(
                "{:?} already exists but is not a bridge",
                conf.bridge
            )));
        }
        if let Some(expected) = prev.interfaces.iter().find(|i| i.name == conf.bridge)
            && !expected.mac.is_empty()
            && !expected.mac.eq_ignore_ascii_case(&bridge.mac)
        {
            return Err(Error::internal(format!(
                "bridge {} mac {} does not match expected {}",
                bridge.name, bridge.mac, expected.mac
            )));
        }
        if bridge.promisc != conf.promisc_mode {
            return Err(Error::internal(format!(
                "bridge {} promiscuous mode is {}, expected {}",
                bridge.name, bridge.promisc, conf.promisc_mode
            )));
        }
        let (mut container, link) =
            check_container_link(cx.kernel, args, &prev, Some(cni_net::LinkKind::Veth))?;
        let mut peer_found = false;
        for candidate in prev.interfaces.iter().filter(|i| i.sandbox.is_empty()) {
            if let Some(host_link) = host.link_by_name(&candidate.name)?
                && host_link.parent == Some(link.index)
                && host_link.master == Some(bridge.index)
            {
                peer_found = true;
            }
        }
        if !peer_found {
            return Err(Error::internal(format!(
                "CNI veth {} not attached to bridge {}",
                link.name, bridge.name
            )));
        }
        check_addresses_and_routes(&mut container, &link, &prev)
    }

    fn gc(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let conf = Conf::load(args)?;
        crate::pkg::gc_ipam_and_masq(args, cx, conf.l3 && conf.ip_masq)
    }

    fn status(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        Conf::load(args)?;
        match args.ipam_type() {
            Some(ipam_type) => ipam_verb(cx, ipam_type, Command::Status, args),
            None => Ok(()),
        }
    }
}

/// The result's interfaces: bridge, host veth, container veth (upstream's order).
fn interfaces(bridge: &Link, host: &Link, container: &Link, netns: &str) -> v100::Result {
    let iface = |link: &Link, sandbox: &str| v100::Interface {
        name: link.name.clone(),
        mac: link.mac.clone(),
        sandbox: sandbox.to_string(),
        ..Default::default()
    };
    v100::Result {
        cni_version: cni_types::version::CURRENT.into(),
        interfaces: vec![iface(bridge, ""), iface(host, ""), iface(container, netns)],
        ..Default::default()
    }
}

/// IPAM's addresses on the container interface (index 2), with the bridge's default
/// gateway and default routes as configured.
fn set_addresses(result: &mut v100::Result, ipam: v100::Result, conf: &Conf) -> Result<(), Error> {
    if ipam.ips.is_empty() {
        return Err(Error::internal("IPAM plugin returned missing IP config"));
    }
    result.ips = ipam.ips;
    result.routes = ipam.routes;
    result.dns = ipam.dns;
    for ip in &mut result.ips {
        ip.interface = Some(2);
        if conf.is_gateway && ip.gateway.is_none() {
            ip.gateway = Some(first_host(&ip.address));
        }
    }
    if conf.is_default_gateway {
        add_default_routes(result);
    }
    Ok(())
}

/// isGateway: each family's gateway address on the bridge (or its VLAN interface),
/// and forwarding on.
fn add_gateways(
    kernel: &cni_net::Kernel,
    host: &mut Netlink,
    bridge: &Link,
    conf: &Conf,
    result: &v100::Result,
) -> Result<(), Error> {
    let gateways: Vec<IpNet> = result
        .ips
        .iter()
        .filter_map(|ip| {
            ip.gateway
                .and_then(|gw| IpNet::new(gw, ip.address.prefix_len()).ok())
        })
        .collect();
    let target = gateway_link(host, bridge, conf)?;
    for gw in &gateways {
        ensure_address(host, &target, *gw, conf.force_address)?;
    }
    for family in [Family::V4, Family::V6] {
        if gateways.iter().any(|g| Family::of(&g.addr()) == family) {
            kernel
                .enable_forwarding(family)
                .context("failed to enable forwarding")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
