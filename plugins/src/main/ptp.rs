//! ptp: a veth pair with routed point-to-point addressing (upstream
//! `plugins/main/ptp`). The container reaches everything through the gateway as an
//! on-link /32 (/128) neighbour; the host routes each container address to its veth.

use cni_net::iface::{VethRequest, configure_iface, setup_veth};
use cni_net::{Family, Netlink, Route as KernelRoute, Scope};
use cni_skel::{Context, Plugin, Request};
use cni_types::net::IpNet;
use cni_types::result::{Result as CniResult, v100};
use cni_types::{Context as _, Error};
use serde::Deserialize;

use crate::pkg::{
    ContainerLink, Rollback, check_addresses_and_routes, check_container_link, del_beside_masq,
    ipam_add, ipam_verb, masq_backend, masq_owner, setup_masq, teardown_masq,
};
use cni_skel::Command;

/// ptp's own keys (the common ones, `ipam` and `dns` among them, are in `PluginConf`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    #[serde(rename = "ipMasq")]
    ip_masq: bool,
    #[serde(rename = "ipMasqBackend")]
    ip_masq_backend: Option<String>,
    mtu: i64,
}

pub struct Ptp;

impl Plugin for Ptp {
    type Conf = Conf;

    fn name(&self) -> &str {
        "ptp"
    }

    fn add(&self, args: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let conf = &args.plugin;
        let kernel = cx.kernel;
        let mtu = crate::pkg::mtu(conf.mtu)?;
        let ipam_type = args.ipam_type().unwrap_or_default();
        let backend = masq_backend(conf.ip_masq, conf.ip_masq_backend.as_deref())?;
        // Started first: the firewall process loads while the interfaces are made.
        let masq = backend.map(cni_net::netfilter::masq::Pending::start);
        let netns = kernel
            .open_netns(&args.netns)
            .context(format!("failed to open netns {:?}", args.netns))?;
        let mut host = kernel.host()?;
        let mut rollback = Rollback::default();
        let ipam = ipam_add(cx, ipam_type, args)?;
        rollback.push(|| {
            let _ = ipam_verb(cx, ipam_type, Command::Del, args);
        });
        if ipam.ips.is_empty() {
            return Err(Error::internal("IPAM plugin returned missing IP config"));
        }
        for family in [Family::V4, Family::V6] {
            if ipam
                .ips
                .iter()
                .any(|ip| Family::of(&ip.address.addr()) == family)
            {
                kernel
                    .enable_forwarding(family)
                    .context("Could not enable IP forwarding")?;
            }
        }

        let mut container = kernel.netlink(&netns)?;
        let request = VethRequest {
            ifname: &args.ifname,
            mtu,
            mac: None,
            master: None,
        };
        let veth = setup_veth(kernel, &mut host, &mut container, &netns, &request)?;
        let container_index = veth.container.index;
        rollback.push_link_removal(kernel, &netns, container_index);

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

        configure_iface(kernel, &netns, &mut container, &veth.container, &result)?;
        // Replace the kernel's connected route with an on-link route to the gateway
        // and the subnet route via it.
        for ip in &result.ips {
            let gateway = ip.gateway.ok_or_else(|| {
                Error::internal(format!("IPAM result for {} has no gateway", ip.address))
            })?;
            let subnet = ip.address.trunc();
            let mut connected = KernelRoute::new(subnet, None, container_index);
            connected.scope = if ip.address.addr().is_ipv4() {
                Scope::Link
            } else {
                Scope::Universe
            };
            container
                .del_route(&connected)
                .context(format!("failed to delete route {subnet}"))?;
            let mut to_gateway = KernelRoute::new(IpNet::from(gateway), None, container_index);
            to_gateway.scope = Scope::Link;
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
                Err(e) if e.already_exists() => {}
                Err(e) => {
                    return Err(Error::internal(format!(
                        "failed to add IP addr {gateway} to {:?}: {e}",
                        veth.host.name
                    )));
                }
            }
            let mut route = KernelRoute::new(IpNet::from(ip.address.addr()), None, veth.host.index);
            // Upstream's host-scope route; IPv6 has no scopes for routes.
            route.scope = if ip.address.addr().is_ipv4() {
                Scope::Host
            } else {
                Scope::Universe
            };
            add_route_once(&mut host, &route)?;
        }

        if let Some(pending) = masq {
            setup_masq(
                kernel,
                pending,
                &result,
                masq_owner(args.network(), args),
                &mut rollback,
            )?;
        }

        if let Some(link) = host.link_by_index(veth.host.index)? {
            result.interfaces[0].mac = link.mac;
        }
        if !args.conf.dns.is_empty() {
            result.dns = args.conf.dns.clone();
        }
        rollback.done();
        Ok(CniResult::V100(result))
    }

    fn del(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let conf = &args.plugin;
        let ipam_type = args.ipam_type().unwrap_or_default();
        // Upstream releases the address before it opens the netns: a netns that cannot
        // be read is reported after IPAM DEL, not instead of it.
        let (found, unreadable) = match ContainerLink::find(cx.kernel, args) {
            Ok(found) => (found, None),
            Err(e) => (crate::pkg::Found::NoNetns, Some(e)),
        };
        let masq = match conf.ip_masq {
            true => Some(teardown_masq(cx.kernel, &found, args)?),
            false => None,
        };
        // Upstream's order: IPAM first, then the link.
        del_beside_masq(masq, || {
            ipam_verb(cx, ipam_type, Command::Del, args)?;
            match (unreadable, found.into_link()) {
                (Some(e), _) => Err(e),
                (None, Some(link)) => link.delete(),
                (None, None) => Ok(()),
            }
        })
    }

    fn check(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        ipam_verb(
            cx,
            args.ipam_type().unwrap_or_default(),
            Command::Check,
            args,
        )?;
        let prev = args.require_prev_result()?;
        let (mut container, link) =
            check_container_link(cx.kernel, args, &prev, Some(cni_net::LinkKind::Veth))?;
        check_addresses_and_routes(&mut container, &link, &prev)
    }

    fn gc(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        crate::pkg::gc_ipam_and_masq(args, cx, args.plugin.ip_masq)
    }

    fn status(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        ipam_verb(
            cx,
            args.ipam_type().unwrap_or_default(),
            Command::Status,
            args,
        )
    }
}

/// Adds a route; an identical one already there is fine.
fn add_route_once(netlink: &mut Netlink, route: &KernelRoute) -> Result<(), Error> {
    match netlink.add_route(route) {
        Err(e) if !e.already_exists() => Err(e.into()),
        _ => Ok(()),
    }
}
