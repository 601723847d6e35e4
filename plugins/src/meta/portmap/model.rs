//! Host-port forwarding for portmap (upstream `plugins/meta/portmap`): the model of
//! one container's mappings, rendered by `iptables.rs` and `nftables.rs` (one file per
//! backend, as upstream) with upstream's table, chain and comment names, so either
//! implementation's DEL removes the other's rules. Every call reads the state once and
//! writes it in one transaction per iptables family (`iptables-restore --noflush`) or
//! one `nft -f -` for both families.

use std::net::IpAddr;

use cni_net::Result;
use cni_net::netfilter::{Backend, chain_name, iptables};
use cni_types::net::IpNet;

use super::{iptables as ipt, nftables};

/// The shared chains; upgrades depend on these names never changing.
pub const DNAT_CHAIN: &str = "CNI-HOSTPORT-DNAT";
pub const SETMARK_CHAIN: &str = "CNI-HOSTPORT-SETMARK";
pub const MASQ_CHAIN: &str = "CNI-HOSTPORT-MASQ";

pub(super) const NFT_TABLE: &str = "cni_hostport";
pub(super) const NFT_TABLE_COMMENT: &str = "CNI portmap plugin";
/// The nft chains holding per-container rules (commented with the container ID).
pub(super) const NFT_RULE_CHAINS: [&str; 3] = ["hostports", "hostip_hostports", "masquerading"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Only traffic to this address is forwarded; `None` or unspecified means any.
    pub host_ip: Option<IpAddr>,
}

impl Mapping {
    /// Whether the mapping applies to a container address of this family: a host IP
    /// of the other family skips it.
    pub(super) fn applies_to(&self, v6: bool) -> bool {
        self.host_ip.is_none_or(|ip| ip.is_ipv6() == v6)
    }

    /// The destination to match, if any (an unspecified host IP matches all).
    pub(super) fn destination(&self) -> Option<IpAddr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snat {
    /// `snat: false`.
    Off,
    /// Mark with this bit in `CNI-HOSTPORT-SETMARK`; `CNI-HOSTPORT-MASQ` masquerades.
    MarkBit(u8),
    /// Jump to this chain, which someone else maintains (`externalSetMarkChain`).
    External(String),
}

#[derive(Debug, Clone)]
pub struct PortMap<'a> {
    pub network: &'a str,
    pub container_id: &'a str,
    pub mappings: &'a [Mapping],
    pub snat: Snat,
    /// Masquerade forwarded traffic from any source, not only hairpin and localhost.
    pub masq_all: bool,
    /// Extra match arguments in the backend's syntax, per family.
    pub conditions_v4: &'a [String],
    pub conditions_v6: &'a [String],
}

/// `CNI-DN-` + hash of network and container ID: the container's iptables chain.
pub fn dnat_chain(network: &str, container_id: &str) -> String {
    chain_name("CNI-DN-", network, container_id)
}

/// The entry rules' comment, cut to iptables' 255 characters as upstream does.
pub(super) fn dnat_comment(network: &str, container_id: &str) -> String {
    let comment = format!("dnat name: \"{network}\" id: \"{container_id}\"");
    if comment.len() <= 255 {
        return comment;
    }
    let mut cut = 253;
    while !comment.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &comment[..cut])
}

pub(super) fn mark(bit: u8) -> String {
    let value = 1u32 << bit;
    format!("{value:#x}/{value:#x}")
}

pub(super) fn ip_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

impl PortMap<'_> {
    pub(super) fn conditions(&self, v6: bool) -> &[String] {
        if v6 {
            self.conditions_v6
        } else {
            self.conditions_v4
        }
    }

    pub(super) fn set_mark_target(&self) -> Option<&str> {
        match &self.snat {
            Snat::Off => None,
            Snat::MarkBit(_) => Some(SETMARK_CHAIN),
            Snat::External(chain) => Some(chain),
        }
    }
}

/// The source that matches every address of a family (`masqAll`).
pub(super) fn any_address(v6: bool) -> &'static str {
    if v6 { "::/0" } else { "0.0.0.0/0" }
}

pub(super) fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// One argument list as an iptables-restore line tail, quoting what needs it.
pub(super) fn render(rule: &[String]) -> String {
    rule.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                iptables::quote(a)
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sets up the forwarding to each container address in `ips` (at most one per
/// family). A failure leaves nothing of this call behind.
pub fn setup(backend: Backend, portmap: &PortMap, ips: &[IpNet]) -> Result<()> {
    match backend {
        Backend::Iptables => ipt::setup(portmap, ips),
        Backend::Nftables => nftables::setup(portmap, ips),
    }
}

/// Removes the forwarding of the given containers in the families `v6s` (`false`
/// for IPv4, `true` for IPv6), found by name and comment alone: the mappings are not
/// needed. Shared chains stay, as upstream leaves them. Missing rules are fine.
pub fn teardown(
    backend: Backend,
    network: &str,
    container_ids: &[&str],
    v6s: &[bool],
) -> Result<()> {
    match backend {
        Backend::Iptables => ipt::teardown(network, container_ids, v6s),
        Backend::Nftables => nftables::teardown(container_ids, v6s),
    }
}

/// Removes one attachment's forwarding: that of `ips` when they are known (empty:
/// the attachment owns none), else (`None`: the container is gone) everything of the
/// container ID in the families `v6s`.
pub fn teardown_attachment(
    backend: Backend,
    network: &str,
    container_id: &str,
    ips: Option<&[IpNet]>,
    v6s: &[bool],
) -> Result<()> {
    match (backend, ips) {
        (_, None) => teardown(backend, network, &[container_id], v6s),
        (Backend::Iptables, Some(ips)) => ipt::teardown_attachment(network, container_id, ips),
        (Backend::Nftables, Some(ips)) => nftables::teardown_attachment(container_id, ips),
    }
}

/// Verifies that the forwarding of `portmap` to each address in `ips` is in place.
pub fn check(backend: Backend, portmap: &PortMap, ips: &[IpNet]) -> Result<()> {
    match backend {
        Backend::Iptables => ipt::check(portmap, ips),
        Backend::Nftables => nftables::check(portmap, ips),
    }
}

/// The mappings and port map the backends' unit tests render.
#[cfg(test)]
pub(super) mod fixtures {
    use super::*;

    pub fn mappings() -> Vec<Mapping> {
        vec![
            Mapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: None,
            },
            Mapping {
                host_port: 8443,
                container_port: 443,
                protocol: "tcp".into(),
                host_ip: Some("192.0.2.1".parse().unwrap()),
            },
            Mapping {
                host_port: 5300,
                container_port: 53,
                protocol: "udp".into(),
                host_ip: Some("2001:db8::1".parse().unwrap()),
            },
        ]
    }

    pub fn portmap(mappings: &[Mapping]) -> PortMap<'_> {
        PortMap {
            network: "mynet",
            container_id: "ctr-1",
            mappings,
            snat: Snat::MarkBit(13),
            masq_all: false,
            conditions_v4: &[],
            conditions_v6: &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_cut_as_upstream() {
        let long = "x".repeat(300);
        let comment = dnat_comment("n", &long);
        assert_eq!(comment.len(), 256);
        assert!(comment.ends_with("..."));
        assert_eq!(dnat_comment("n", "c"), "dnat name: \"n\" id: \"c\"");
    }
}
