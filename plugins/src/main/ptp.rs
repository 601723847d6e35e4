//! ptp: a veth pair with routed point-to-point addressing (upstream
//! `plugins/main/ptp`). The container reaches everything through the gateway as an
//! on-link /32 (/128) neighbour; the host routes each container address to its veth.

use cni_net::iface::{configure_iface, setup_veth};
use cni_net::netfilter::Backend;
use cni_net::route::Route as KernelRoute;
use cni_net::{EEXIST, NetNs, Netlink, sysctl};
use cni_skel::{CmdArgs, Command, Plugin};
use cni_types::Error;
use cni_types::net::IpNet;
use cni_types::result::{Dns, Result as CniResult, v100};
use serde::Deserialize;
use serde_json::Value;

use super::common::{
    ContainerLink, IpamType, Rollback, check_addresses_and_routes, check_container_veth,
    del_beside_masq, ipam_add, ipam_verb, masq_backend, masq_owner, prev_result, setup_masq,
    teardown_masq,
};
use crate::net_error;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Conf {
    name: String,
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(rename = "ipMasq")]
    ip_masq: bool,
    #[serde(rename = "ipMasqBackend")]
    ip_masq_backend: Option<String>,
    mtu: i64,
    ipam: IpamType,
    dns: Dns,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    /// From `ipMasq` and `ipMasqBackend`, decided once in [`Conf::load`].
    #[serde(skip)]
    masq_backend: Option<Backend>,
}

impl Conf {
    fn load(args: &CmdArgs) -> Result<Conf, Error> {
        let mut conf: Conf = args.config()?;
        conf.masq_backend = masq_backend(conf.ip_masq, conf.ip_masq_backend.as_deref())?;
        Ok(conf)
    }
}

pub struct Ptp;

impl Plugin for Ptp {
    fn name(&self) -> &str {
        "ptp"
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult, Error> {
        let conf = Conf::load(args)?;
        let ipam_type = conf.ipam.plugin_type.as_str();
        // Started first: the firewall process loads while the interfaces are made.
        let masq = conf
            .masq_backend
            .map(cni_net::netfilter::masq::Pending::start);
        let netns = NetNs::open(&args.netns)
            .map_err(|e| Error::internal(format!("failed to open netns {:?}: {e}", args.netns)))?;
        let mut host = Netlink::open().map_err(net_error)?;
        let mut rollback = Rollback::default();
        let ipam = ipam_add(ipam_type, args)?;
        rollback.push(|| {
            let _ = ipam_verb(ipam_type, Command::Del, args);
        });
        if ipam.ips.is_empty() {
            return Err(Error::internal("IPAM plugin returned missing IP config"));
        }
        for v6 in [false, true] {
            if ipam.ips.iter().any(|ip| ip.address.addr().is_ipv6() == v6) {
                sysctl::enable_forwarding(v6)
                    .map_err(|e| Error::internal(format!("Could not enable IP forwarding: {e}")))?;
            }
        }

        let mut container = Netlink::open_in(&netns).map_err(net_error)?;
        let mtu = u32::try_from(conf.mtu).unwrap_or(0);
        let veth = setup_veth(
            &mut host,
            &mut container,
            &netns,
            &args.ifname,
            mtu,
            None,
            None,
        )
        .map_err(net_error)?;
        let container_index = veth.container.index;
        let netns_ref = &netns;
        rollback.push(move || {
            if let Ok(mut netlink) = Netlink::open_in(netns_ref) {
                let _ = netlink.delete_link(container_index);
            }
        });

        let mut result = ipam;
        result.cni_version = cni_types::version::CURRENT.into();
        result.interfaces = vec![
            v100::Interface {
                name: veth.host.name.clone(),
                mac: veth.host.mac.clone(),
                ..Default::default()
            },
            v100::Interface {
                name: veth.container.name.clone(),
                mac: veth.container.mac.clone(),
                sandbox: args.netns.clone(),
                ..Default::default()
            },
        ];
        for ip in &mut result.ips {
            ip.interface = Some(1);
        }

        configure_iface(&netns, &mut container, &veth.container, &result).map_err(net_error)?;
        // Replace the kernel's connected route with an on-link route to the gateway
        // and the subnet route via it.
        for ip in &result.ips {
            let gateway = ip.gateway.ok_or_else(|| {
                Error::internal(format!("IPAM result for {} has no gateway", ip.address))
            })?;
            let subnet = ip.address.trunc();
            let mut connected = KernelRoute::new(subnet, None, container_index);
            connected.scope = if ip.address.addr().is_ipv4() { 253 } else { 0 };
            container
                .del_route(&connected)
                .map_err(|e| Error::internal(format!("failed to delete route {subnet}: {e}")))?;
            let mut to_gateway = KernelRoute::new(IpNet::from(gateway), None, container_index);
            to_gateway.scope = 253;
            to_gateway.src = Some(ip.address.addr());
            add_route_once(&mut container, &to_gateway)?;
            let mut via_gateway = KernelRoute::new(subnet, Some(gateway), container_index);
            via_gateway.src = Some(ip.address.addr());
            add_route_once(&mut container, &via_gateway)?;
        }

        // Host side: the gateway address on the veth (shared by every veth of the
        // network) and a host route to each container address.
        for ip in &result.ips {
            let Some(gateway) = ip.gateway else { continue };
            match host.add_address(veth.host.index, IpNet::from(gateway), false) {
                Ok(()) => {}
                Err(e) if e.errno() == Some(EEXIST) => {}
                Err(e) => {
                    return Err(Error::internal(format!(
                        "failed to add IP addr {gateway} to {:?}: {e}",
                        veth.host.name
                    )));
                }
            }
            let mut route = KernelRoute::new(IpNet::from(ip.address.addr()), None, veth.host.index);
            // Upstream's host-scope route; IPv6 has no scopes for routes.
            route.scope = if ip.address.addr().is_ipv4() { 254 } else { 0 };
            add_route_once(&mut host, &route)?;
        }

        if let Some(pending) = masq {
            setup_masq(
                pending,
                &result,
                masq_owner(&conf.name, args),
                &mut rollback,
            )?;
        }

        if let Some(link) = host.link_by_index(veth.host.index).map_err(net_error)? {
            result.interfaces[0].mac = link.mac;
        }
        if !conf.dns.is_empty() {
            result.dns = conf.dns.clone();
        }
        rollback.done();
        Ok(CniResult::V100(result))
    }

    fn del(&self, args: &CmdArgs) -> Result<(), Error> {
        let conf = Conf::load(args)?;
        // Upstream releases the address before it opens the netns: a netns that cannot
        // be read is reported after IPAM DEL, not instead of it.
        let (link, unreadable) = match ContainerLink::find(args) {
            Ok(link) => (link, None),
            Err(e) => (None, Some(e)),
        };
        let masq = conf.ip_masq.then(|| {
            teardown_masq(
                link.as_ref(),
                &conf.name,
                &conf.cni_version,
                conf.prev_result.as_ref(),
                args,
            )
        });
        // Upstream's order: IPAM first, then the link.
        del_beside_masq(masq, || {
            ipam_verb(&conf.ipam.plugin_type, Command::Del, args)?;
            match (unreadable, link) {
                (Some(e), _) => Err(e),
                (None, Some(link)) => link.delete(),
                (None, None) => Ok(()),
            }
        })
    }

    fn check(&self, args: &CmdArgs) -> Result<(), Error> {
        let conf = Conf::load(args)?;
        ipam_verb(&conf.ipam.plugin_type, Command::Check, args)?;
        let prev = prev_result(&conf.cni_version, conf.prev_result.clone())?;
        let (mut container, link) = check_container_veth(args, &prev)?;
        check_addresses_and_routes(&mut container, &link, &prev)
    }

    fn status(&self, args: &CmdArgs) -> Result<(), Error> {
        let conf = Conf::load(args)?;
        ipam_verb(&conf.ipam.plugin_type, Command::Status, args)
    }
}

/// Adds a route; an identical one already there is fine.
fn add_route_once(netlink: &mut Netlink, route: &KernelRoute) -> Result<(), Error> {
    match netlink.add_route(route) {
        Ok(()) => Ok(()),
        Err(e) if e.errno() == Some(EEXIST) => Ok(()),
        Err(e) => Err(net_error(e)),
    }
}
