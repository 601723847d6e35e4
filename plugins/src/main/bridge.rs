//! bridge: a veth pair from the container to a Linux bridge on the host, with
//! optional gateway address, masquerade, MAC spoof check and VLANs (upstream
//! `plugins/main/bridge`). The config keys are those of upstream, see
//! `docs/plugins/bridge.md`.

use std::net::IpAddr;
use std::time::Duration;

use cni_net::iface::{self, configure_iface, setup_veth};
use cni_net::netfilter::{Backend, spoofchk};
use cni_net::{BridgePort, EEXIST, Link, NetNs, Netlink, NewVeth, sysctl};
use cni_skel::{CmdArgs, Command, Plugin};
use cni_types::Error;
use cni_types::net::IpNet;
use cni_types::result::{Dns, Result as CniResult, Route, v100};
use serde::Deserialize;
use serde_json::Value;

use super::common::{
    ContainerLink, IpamType, MacArgs, Rollback, RuntimeMac, check_addresses_and_routes,
    check_container_veth, container_mac, del_beside_masq, ipam_add, ipam_verb, masq_backend,
    masq_owner, prev_result, setup_masq, teardown_masq,
};
use crate::net_error;

const DEFAULT_BRIDGE: &str = "cni0";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Conf {
    name: String,
    #[serde(rename = "cniVersion")]
    cni_version: String,
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
    ipam: Option<IpamType>,
    dns: Dns,
    args: Option<MacArgs>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: Option<RuntimeMac>,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    /// From `ipMasq` and `ipMasqBackend`, decided once in [`Conf::load`].
    #[serde(skip)]
    masq_backend: Option<Backend>,
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
    fn load(args: &CmdArgs) -> Result<Conf, Error> {
        let mut conf: Conf = args.config()?;
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
        if conf.disable_container_interface && conf.ipam_type().is_some() {
            return Err(Error::internal(
                "cannot use IPAM when DisableContainerInterface flag is set",
            ));
        }
        conf.masq_backend = masq_backend(conf.ip_masq, conf.ip_masq_backend.as_deref())?;
        Ok(conf)
    }

    /// L3 mode iff `ipam.type` is set.
    fn ipam_type(&self) -> Option<&str> {
        self.ipam
            .as_ref()
            .map(|i| i.plugin_type.as_str())
            .filter(|t| !t.is_empty())
    }

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
    fn name(&self) -> &str {
        "bridge"
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult, Error> {
        let conf = Conf::load(args)?;
        let mac = container_mac(&args.args, conf.args.as_ref(), conf.runtime_config.as_ref())?;
        let trunk = trunk_vids(&conf.vlan_trunk).map_err(Error::internal)?;
        // Started first: the firewall process loads while the interfaces are made.
        let masq = conf
            .masq_backend
            .filter(|_| conf.ipam_type().is_some())
            .map(cni_net::netfilter::masq::Pending::start);
        let mut host = Netlink::open().map_err(net_error)?;
        let bridge = ensure_bridge(&mut host, &conf)?;

        let netns = NetNs::open(&args.netns)
            .map_err(|e| Error::internal(format!("failed to open netns {:?}: {e}", args.netns)))?;
        let mut container = Netlink::open_in(&netns).map_err(net_error)?;
        let veth = setup_veth(
            &mut host,
            &mut container,
            &netns,
            &args.ifname,
            conf.mtu(),
            mac,
            Some(bridge.index),
        )
        .map_err(net_error)?;

        // From here on, a failure undoes everything this call did.
        let mut rollback = Rollback::default();
        let container_index = veth.container.index;
        let netns_ref = &netns;
        rollback.push(move || {
            if let Ok(mut netlink) = Netlink::open_in(netns_ref) {
                let _ = netlink.delete_link(container_index);
            }
        });

        attach_to_bridge(&mut host, &veth.host, &conf, &trunk)?;

        let mut result = v100::Result {
            cni_version: cni_types::version::CURRENT.into(),
            interfaces: vec![
                v100::Interface {
                    name: bridge.name.clone(),
                    mac: bridge.mac.clone(),
                    ..Default::default()
                },
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
            ],
            ..Default::default()
        };

        if conf.macspoofchk {
            spoofchk::SpoofCheck {
                host_iface: &veth.host.name,
                mac: &veth.container.mac,
                container_id: &args.container_id,
                ifname: &args.ifname,
            }
            .setup()
            .map_err(net_error)?;
            rollback.push(|| {
                let _ = spoofchk::teardown(&args.container_id, &args.ifname);
            });
        }

        if let Some(ipam_type) = conf.ipam_type() {
            let ipam = ipam_add(ipam_type, args)?;
            rollback.push(move || {
                let _ = ipam_verb(ipam_type, Command::Del, args);
            });
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
                add_default_routes(&mut result);
            }

            let ifname = args.ifname.clone();
            let enabledad = conf.enabledad;
            netns
                .run(|| container_sysctls(&ifname, enabledad))
                .map_err(net_error)?;
            configure_iface(&netns, &mut container, &veth.container, &result).map_err(net_error)?;

            if conf.is_gateway {
                let gateways: Vec<IpNet> = result
                    .ips
                    .iter()
                    .filter_map(|ip| {
                        ip.gateway
                            .and_then(|gw| IpNet::new(gw, ip.address.prefix_len()).ok())
                    })
                    .collect();
                let target = gateway_link(&mut host, &bridge, &conf)?;
                for gw in &gateways {
                    ensure_address(&mut host, &target, *gw, conf.force_address)?;
                }
                for v6 in [false, true] {
                    if gateways.iter().any(|g| g.addr().is_ipv6() == v6) {
                        sysctl::enable_forwarding(v6).map_err(|e| {
                            Error::internal(format!("failed to enable forwarding: {e}"))
                        })?;
                    }
                }
            }

            if let Some(pending) = masq {
                setup_masq(
                    pending,
                    &result,
                    masq_owner(&conf.name, args),
                    &mut rollback,
                )?;
            }
        } else if !conf.disable_container_interface {
            container
                .set_link_up(veth.container.index, true)
                .map_err(net_error)?;
        }

        if !conf.disable_container_interface {
            wait_port_up(&mut host, &veth.host)?;
        }

        // The bridge's MAC may have changed: it follows its ports until it gets an
        // address, which pins it.
        if let Some(link) = host.link_by_index(bridge.index).map_err(net_error)? {
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
        let link = ContainerLink::find(args)?;
        let masq = (conf.ipam_type().is_some() && conf.ip_masq).then(|| {
            teardown_masq(
                link.as_ref(),
                &conf.name,
                &conf.cni_version,
                conf.prev_result.as_ref(),
                args,
            )
        });
        del_beside_masq(masq, || {
            if let Some(link) = link {
                link.delete()?;
            }
            if let Some(ipam_type) = conf.ipam_type() {
                ipam_verb(ipam_type, Command::Del, args)?;
            }
            // Only when configured, as upstream: listing the bridge table is an `nft`
            // process, a third of a DEL without firewall work.
            if conf.macspoofchk
                && let Err(e) = spoofchk::teardown(&args.container_id, &args.ifname)
            {
                eprintln!("failed to remove the MAC spoof check: {e}");
            }
            Ok(())
        })
    }

    fn check(&self, args: &CmdArgs) -> Result<(), Error> {
        let conf = Conf::load(args)?;
        if let Some(ipam_type) = conf.ipam_type() {
            ipam_verb(ipam_type, Command::Check, args)?;
        }
        let prev = prev_result(&conf.cni_version, conf.prev_result.clone())?;
        let mut host = Netlink::open().map_err(net_error)?;
        let bridge = host
            .link_by_name(&conf.bridge)
            .map_err(net_error)?
            .ok_or_else(|| Error::internal(format!("failed to find bridge {:?}", conf.bridge)))?;
        if bridge.kind != "bridge" {
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
        let (mut container, link) = check_container_veth(args, &prev)?;
        let mut peer_found = false;
        for candidate in prev.interfaces.iter().filter(|i| i.sandbox.is_empty()) {
            if let Some(host_link) = host.link_by_name(&candidate.name).map_err(net_error)?
                && host_link.peer_index == Some(link.index)
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

    fn status(&self, args: &CmdArgs) -> Result<(), Error> {
        let conf = Conf::load(args)?;
        match conf.ipam_type() {
            Some(ipam_type) => ipam_verb(ipam_type, Command::Status, args),
            None => Ok(()),
        }
    }
}

/// Creates the bridge unless it exists (a concurrent ADD may create it first: EEXIST
/// is fine), and brings it up. An existing bridge that is already up and promiscuous
/// as configured costs one lookup: the common case, every ADD after the first.
fn ensure_bridge(host: &mut Netlink, conf: &Conf) -> Result<Link, Error> {
    let mut link = match host.link_by_name(&conf.bridge).map_err(net_error)? {
        Some(link) => link,
        None => {
            match host.create_bridge(
                &conf.bridge,
                conf.mtu(),
                conf.vlan != 0 || !conf.vlan_trunk.is_empty(),
            ) {
                Ok(()) => {}
                Err(e) if e.errno() == Some(EEXIST) => {}
                Err(e) => {
                    return Err(Error::internal(format!(
                        "could not add {:?}: {e}",
                        conf.bridge
                    )));
                }
            }
            host.require_link(&conf.bridge).map_err(net_error)?
        }
    };
    if link.kind != "bridge" {
        return Err(Error::internal(format!(
            "{:?} already exists but is not a bridge",
            conf.bridge
        )));
    }
    if conf.promisc_mode && !link.promisc {
        host.set_promisc(link.index, true).map_err(net_error)?;
        link.promisc = true;
    }
    // We own the routes of this interface; written every time, as upstream does.
    let _ = sysctl::write(&format!("net/ipv6/conf/{}/accept_ra", conf.bridge), "0");
    if !link.up {
        host.set_link_up(link.index, true).map_err(net_error)?;
        link.up = true;
    }
    Ok(link)
}

/// Sets the host veth's port flags and VLANs (upstream step 4; the veth was
/// enslaved when it was created). Hairpin and isolation are off on a new port, so
/// they cost a request only when configured on.
fn attach_to_bridge(
    host: &mut Netlink,
    port: &Link,
    conf: &Conf,
    trunk: &[u16],
) -> Result<(), Error> {
    if conf.hairpin_mode || conf.port_isolation {
        host.set_bridge_port(
            port.index,
            BridgePort {
                hairpin: conf.hairpin_mode,
                isolated: conf.port_isolation,
            },
        )
        .map_err(|e| {
            Error::internal(format!(
                "failed to setup hairpin mode for {}: {e}",
                port.name
            ))
        })?;
    }
    apply_vlans(host, port.index, conf, trunk).map_err(net_error)
}

/// The VLAN entries of a bridge port: drop the default VID 1 (unless
/// preserveDefaultVlan), `vlan` as PVID untagged, each trunk VID tagged; a trunk
/// without `vlan` keeps VID 1 as PVID untagged.
fn apply_vlans(host: &mut Netlink, index: u32, conf: &Conf, trunk: &[u16]) -> cni_net::Result<()> {
    if conf.vlan == 0 && trunk.is_empty() {
        return Ok(());
    }
    if !conf.preserve_default_vlan {
        host.bridge_vlan_del(index, 1)?;
    }
    if let Ok(vid) = u16::try_from(conf.vlan)
        && vid != 0
    {
        host.bridge_vlan_add(index, vid, true, true)?;
    }
    for vid in trunk {
        host.bridge_vlan_add(index, *vid, false, false)?;
    }
    if conf.vlan == 0 {
        host.bridge_vlan_add(index, 1, true, true)?;
    }
    Ok(())
}

/// Where the gateway address goes: the bridge, or with a VLAN a host-side veth
/// `<bridge>.<vlan>` attached to the bridge with that VLAN.
fn gateway_link(host: &mut Netlink, bridge: &Link, conf: &Conf) -> Result<Link, Error> {
    if conf.vlan == 0 {
        return Ok(bridge.clone());
    }
    let name = format!("{}.{}", conf.bridge, conf.vlan);
    if let Some(link) = host.link_by_name(&name).map_err(net_error)? {
        return Ok(link);
    }
    let peer = iface::random_veth_name().map_err(net_error)?;
    let veth = NewVeth {
        name: &name,
        peer: &peer,
        mtu: conf.mtu(),
        ..Default::default()
    };
    match host.create_veth(&veth) {
        Ok(_) => {}
        Err(e) if e.errno() == Some(EEXIST) => {}
        Err(e) => return Err(net_error(e)),
    }
    let link = host.require_link(&name).map_err(net_error)?;
    let peer_link = host.require_link(&peer).map_err(net_error)?;
    host.set_master(peer_link.index, Some(bridge.index))
        .map_err(net_error)?;
    apply_vlans(host, peer_link.index, conf, &[]).map_err(net_error)?;
    host.set_link_up(peer_link.index, true).map_err(net_error)?;
    host.set_link_up(link.index, true).map_err(net_error)?;
    Ok(link)
}

/// Puts `gateway` on `link` (upstream `ensureAddr`): an identical address is fine;
/// another IPv4 address, or an overlapping IPv6 one, is an error unless
/// forceAddress. Then pins the bridge MAC so it stops following its ports.
fn ensure_address(
    host: &mut Netlink,
    link: &Link,
    gateway: IpNet,
    force: bool,
) -> Result<(), Error> {
    let v6 = gateway.addr().is_ipv6();
    for existing in host.addresses(link.index).map_err(net_error)? {
        let address = existing.address;
        if address.addr().is_ipv6() != v6 {
            continue;
        }
        if address == gateway {
            return Ok(());
        }
        if !v6 || address.contains(&gateway.addr()) || gateway.contains(&address.addr()) {
            if !force {
                return Err(Error::internal(format!(
                    "{:?} already has an IP address different from {gateway}",
                    link.name
                )));
            }
            host.del_address(link.index, address).map_err(net_error)?;
        }
    }
    match host.add_address(link.index, gateway, false) {
        Ok(()) => {}
        Err(e) if e.errno() == Some(EEXIST) => {}
        Err(e) => {
            return Err(Error::internal(format!(
                "could not add IP address to {:?}: {e}",
                link.name
            )));
        }
    }
    let current = host.require_link(&link.name).map_err(net_error)?;
    if let Ok(mac) = cni_net::parse_mac(&current.mac) {
        host.set_mac(current.index, mac).map_err(net_error)?;
    }
    Ok(())
}

/// The first host address of a subnet: upstream's default gateway.
fn first_host(address: &IpNet) -> IpAddr {
    match address.network() {
        IpAddr::V4(n) => IpAddr::V4((u32::from(n).wrapping_add(1)).into()),
        IpAddr::V6(n) => IpAddr::V6((u128::from(n).wrapping_add(1)).into()),
    }
}

/// isDefaultGateway: a default route per family via its first gateway, unless IPAM
/// already gave one.
fn add_default_routes(result: &mut v100::Result) {
    for v6 in [false, true] {
        let has_default = result
            .routes
            .iter()
            .any(|r| r.dst.prefix_len() == 0 && r.dst.addr().is_ipv6() == v6);
        let gateway = result
            .ips
            .iter()
            .filter(|ip| ip.address.addr().is_ipv6() == v6)
            .find_map(|ip| ip.gateway);
        if let (false, Some(gw)) = (has_default, gateway) {
            let dst = if v6 { "::/0" } else { "0.0.0.0/0" };
            if let Ok(dst) = dst.parse() {
                result.routes.push(Route::new(dst, Some(gw)));
            }
        }
    }
}

/// In the container: IPv6 DAD as `enabledad` says, and gratuitous ARP on changes.
/// Errors are ignored as upstream does (IPv6 may be off).
fn container_sysctls(ifname: &str, enabledad: bool) {
    if enabledad {
        let _ = sysctl::write(&format!("net/ipv6/conf/{ifname}/enhanced_dad"), "1");
        let _ = sysctl::write(&format!("net/ipv6/conf/{ifname}/accept_dad"), "1");
    } else {
        let _ = sysctl::write(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0");
    }
    let _ = sysctl::write(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1");
}

/// Waits for the host veth to be operationally up (upstream #468), sleeping 0, 50,
/// 500, 1000 and 1000 ms between looks.
fn wait_port_up(host: &mut Netlink, port: &Link) -> Result<(), Error> {
    let mut state = String::new();
    for pause in [0, 50, 500, 1000, 1000] {
        std::thread::sleep(Duration::from_millis(pause));
        state = host
            .link_by_index(port.index)
            .map_err(net_error)?
            .map(|l| l.oper_state)
            .unwrap_or_default();
        if state == "up" {
            return Ok(());
        }
    }
    Err(Error::internal(format!(
        "bridge port in error state: {state}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunks_are_validated_and_sorted() {
        let t = |id: Option<i64>, min: Option<i64>, max: Option<i64>| Trunk {
            id,
            min_id: min,
            max_id: max,
        };
        assert_eq!(
            trunk_vids(&[
                t(Some(7), None, None),
                t(None, Some(3), Some(5)),
                t(Some(4), None, None)
            ]),
            Ok(vec![3, 4, 5, 7])
        );
        assert_eq!(
            trunk_vids(&[t(None, Some(3), None)]),
            Err("minID and maxID should be configured simultaneously, maxID is missing".into())
        );
        assert_eq!(
            trunk_vids(&[t(None, None, Some(3))]),
            Err("minID and maxID should be configured simultaneously, minID is missing".into())
        );
        assert_eq!(
            trunk_vids(&[t(None, Some(5), Some(3))]),
            Err("minID is greater than maxID in trunk parameter".into())
        );
        assert_eq!(
            trunk_vids(&[t(Some(4095), None, None)]),
            Err("incorrect trunk id parameter".into())
        );
        assert_eq!(
            trunk_vids(&[t(None, Some(0), Some(3))]),
            Err("incorrect trunk minID parameter".into())
        );
    }

    #[test]
    fn vlans_go_to_the_port_as_upstream_orders_them() {
        let conf = Conf {
            vlan: 100,
            ..Default::default()
        };
        let mut netlink = Netlink::fake();
        apply_vlans(&mut netlink, 9, &conf, &[200, 201]).expect("fake kernel");
        let sent = netlink.sent_text();
        assert_eq!(sent.len(), 4, "{sent:#?}");
        assert!(
            sent[0].starts_with("DelLink") && sent[0].contains("vid: 1 "),
            "{}",
            sent[0]
        );
        assert!(
            sent[1].contains("Pvid | Untagged") && sent[1].contains("vid: 100 "),
            "{}",
            sent[1]
        );
        assert!(
            sent[2].contains("flags: BridgeVlanInfoFlags(0x0)") && sent[2].contains("vid: 200 "),
            "{}",
            sent[2]
        );
        assert!(sent[3].contains("vid: 201 "), "{}", sent[3]);

        // A trunk without vlan keeps VID 1 as the untagged PVID; preserveDefaultVlan
        // keeps the existing entry.
        let conf = Conf {
            preserve_default_vlan: true,
            ..Default::default()
        };
        let mut netlink = Netlink::fake();
        apply_vlans(&mut netlink, 9, &conf, &[5]).expect("fake kernel");
        let sent = netlink.sent_text();
        assert_eq!(sent.len(), 2, "{sent:#?}");
        assert!(
            sent[1].contains("Pvid | Untagged") && sent[1].contains("vid: 1 "),
            "{}",
            sent[1]
        );
        // No VLAN keys: no VLAN requests.
        let mut netlink = Netlink::fake();
        apply_vlans(&mut netlink, 9, &Conf::default(), &[]).expect("nothing");
        assert!(netlink.sent().is_empty());
    }

    #[test]
    fn gateway_defaults_to_the_first_host_address() {
        assert_eq!(
            first_host(&"10.22.3.4/16".parse().expect("cidr")).to_string(),
            "10.22.0.1"
        );
        assert_eq!(
            first_host(&"fd00:1::5/64".parse().expect("cidr")).to_string(),
            "fd00:1::1"
        );
    }
}
