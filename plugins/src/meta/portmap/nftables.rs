//! portmap's nftables backend (tables `ip cni_hostport` and `ip6 cni_hostport`),
//! in-process (`cni_net::nft`): the base chains `prerouting` and `output` jump to
//! `hostports_all`, which jumps to the legacy `hostip_hostports` (kept empty) and
//! `hostports`; every mapping is one DNAT rule in `hostports` and the
//! hairpin/localhost masquerades are rules in `masquerading`, all commented with the
//! container ID. `conditionsV4/V6` are raw `nft` text that only `nft` can compile:
//! base chains with conditions are the one thing written by running `nft`.

use std::net::IpAddr;

use cni_net::netfilter::nft as nft_text;
use cni_net::nft::expr::TRANSPORT_HEADER;
use cni_net::nft::matches::{self, Field};
use cni_net::nft::{BaseChain, Batch, Expr, Family, Hook, Listing, Nft, Verdict};
use cni_net::{NetError, Result};
use cni_types::net::IpNet;

use super::model::{NFT_RULE_CHAINS, NFT_TABLE, NFT_TABLE_COMMENT, PortMap, Snat, any_address};

fn family(v6: bool) -> Family {
    if v6 { Family::Ip6 } else { Family::Ip }
}

fn protocol_number(protocol: &str) -> u8 {
    match protocol {
        "udp" => 17,
        "sctp" => 132,
        _ => 6,
    }
}

impl PortMap<'_> {
    /// This container's rules for address `container`: (chain, expressions).
    fn nft_rules(&self, container: IpNet) -> Vec<(&'static str, Vec<Expr>)> {
        let ip = container.addr();
        let v6 = ip.is_ipv6();
        let host = |ip: IpAddr| IpNet::from(ip);
        let mut rules = Vec::new();
        for m in self.mappings.iter().filter(|m| m.applies_to(v6)) {
            let mut rule = Vec::new();
            if let Some(destination) = m.destination() {
                rule.extend(matches::address(Field::Daddr, host(destination), true));
            }
            rule.extend(matches::dport(protocol_number(&m.protocol), m.host_port));
            rule.extend(matches::dnat(ip, m.container_port));
            rules.push(("hostports", rule));
        }
        if self.snat != Snat::Off {
            let mut sources = vec![match self.masq_all {
                true => any_address(v6).parse().unwrap_or(host(ip)),
                false => host(ip),
            }];
            if !v6 && !self.masq_all {
                sources.push(host([127, 0, 0, 1].into()));
            }
            for source in sources {
                let mut rule = matches::address(Field::Saddr, source, true);
                rule.extend(matches::address(Field::Daddr, host(ip), true));
                rule.push(Expr::Masq);
                rules.push(("masquerading", rule));
            }
        }
        rules
    }
}

/// Writes the forwarding of every address in one transaction (base chains with
/// conditions first, through `nft`).
pub(super) fn setup(portmap: &PortMap, ips: &[IpNet]) -> Result<()> {
    let mut engine = Nft::open()?;
    let mut batch = Batch::new();
    for ip in ips {
        let v6 = ip.addr().is_ipv6();
        let listing = engine.list(family(v6), NFT_TABLE)?;
        setup_batch(&mut batch, portmap, *ip, &listing)?;
        let conditions = portmap.conditions(v6);
        if !conditions.is_empty() {
            nft_text::apply(&conditioned_skeleton(v6, conditions))
                .map_err(|e| e.context("unable to set up nftables rules for port mappings"))?;
        }
    }
    engine
        .commit(&batch)
        .map_err(|e| e.context("unable to set up nftables rules for port mappings"))
}

/// One family's changes: the table's skeleton where it is missing or different (left
/// alone when it is exactly in place: updating an existing chain is a 10–20 ms
/// commit), this container's earlier rules removed (upstream duplicates them on a
/// repeated ADD), and its rules.
fn setup_batch(
    batch: &mut Batch,
    portmap: &PortMap,
    container: IpNet,
    listing: &Listing,
) -> Result<()> {
    let v6 = container.addr().is_ipv6();
    let f = family(v6);
    let t = NFT_TABLE;
    batch.add_table(f, t, Some(NFT_TABLE_COMMENT))?;
    for chain in ["hostports", "hostip_hostports", "hostports_all"] {
        if !listing.has_chain(chain) {
            batch.add_chain(f, t, chain, None, None)?;
        }
    }
    let jumps = [
        vec![matches::verdict(Verdict::Jump("hostip_hostports".into()))],
        vec![matches::verdict(Verdict::Jump("hostports".into()))],
    ];
    if !listing.chain_holds("hostports_all", &jumps) {
        if listing.has_chain("hostports_all") {
            batch.flush_chain(f, t, "hostports_all");
        }
        for rule in &jumps {
            batch.add_rule(f, t, "hostports_all", rule, None)?;
        }
    }
    // With conditions the base chains are `nft`'s to write.
    if portmap.conditions(v6).is_empty() {
        let mut local = matches::fib_daddr_local();
        local.push(matches::verdict(Verdict::Jump("hostports_all".into())));
        for (chain, hook) in [("prerouting", Hook::Prerouting), ("output", Hook::Output)] {
            let want = std::slice::from_ref(&local);
            if listing.chain_holds(chain, want) {
                continue;
            }
            if listing.has_chain(chain) {
                batch.flush_chain(f, t, chain);
            } else {
                batch.add_chain(f, t, chain, Some(nat_chain(hook, -100)), None)?;
            }
            batch.add_rule(f, t, chain, &local, None)?;
        }
    }
    if portmap.snat != Snat::Off && !listing.has_chain("masquerading") {
        batch.add_chain(
            f,
            t,
            "masquerading",
            Some(nat_chain(Hook::Postrouting, 100)),
            None,
        )?;
    }
    for rule in listing.select(|r| ours(r, portmap.container_id)) {
        batch.delete_rule(f, t, &rule.chain, rule.handle);
    }
    for (chain, rule) in portmap.nft_rules(container) {
        batch.add_rule(f, t, chain, &rule, Some(portmap.container_id))?;
    }
    Ok(())
}

fn nat_chain(hook: Hook, priority: i32) -> BaseChain {
    BaseChain {
        kind: "nat",
        hook,
        priority,
        accept_policy: false,
    }
}

/// The base chains with the config's conditions, as upstream writes them (`nft -f`).
fn conditioned_skeleton(v6: bool, conditions: &[String]) -> String {
    let t = format!("{} {NFT_TABLE}", family(v6).name());
    let conditions: String = conditions.iter().map(|c| format!("{c} ")).collect();
    let mut lines = Vec::new();
    for (chain, hook) in [("prerouting", "prerouting"), ("output", "output")] {
        lines.push(format!(
            "add chain {t} {chain} {{ type nat hook {hook} priority -100 ; }}"
        ));
        lines.push(format!("flush chain {t} {chain}"));
        lines.push(format!(
            "add rule {t} {chain} {conditions}fib daddr type local jump hostports_all"
        ));
    }
    lines.join("\n") + "\n"
}

/// A rule of the container (`comment` = its ID) in one of portmap's rule chains.
fn ours(rule: &cni_net::nft::Rule, container_id: &str) -> bool {
    NFT_RULE_CHAINS.contains(&rule.chain.as_str()) && rule.comment == container_id
}

/// Removes every rule of the given containers in the families `v6s`, in one commit.
pub(super) fn teardown(container_ids: &[&str], v6s: &[bool]) -> Result<()> {
    delete_where(v6s, |rule| container_ids.iter().any(|id| ours(rule, id)))
        .map_err(|e| e.context("error deleting nftables rules"))
}

/// DEL of one attachment whose addresses are `ips`: the container's rules that
/// forward to or masquerade for those addresses (the comment is the container ID
/// alone, so the address in the rule tells the attachments apart).
pub(super) fn teardown_attachment(container_id: &str, ips: &[IpNet]) -> Result<()> {
    let targets: Vec<Vec<u8>> = ips.iter().map(|ip| address_bytes(ip.addr())).collect();
    let v6s: Vec<bool> = ips.iter().map(|ip| ip.addr().is_ipv6()).collect();
    delete_where(&v6s, |rule| {
        ours(rule, container_id) && targets_one_of(rule, &targets)
    })
    .map_err(|e| e.context("error deleting nftables rules"))
}

fn address_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Whether a rule forwards to (its DNAT address) or masquerades for (its
/// destination match) one of `targets`.
fn targets_one_of(rule: &cni_net::nft::Rule, targets: &[Vec<u8>]) -> bool {
    rule.exprs.iter().any(|e| match e {
        Expr::Immediate { data, .. } | Expr::Cmp { data, .. } => targets.contains(data),
        _ => false,
    })
}

/// Deletes the rules `matches` picks in the families `v6s`; a kernel without
/// nf_tables has none.
fn delete_where(v6s: &[bool], matches: impl Fn(&cni_net::nft::Rule) -> bool) -> Result<()> {
    let mut engine = match Nft::open() {
        Ok(engine) => engine,
        Err(e) if cni_net::nft::unavailable(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut batch = Batch::new();
    let mut families = v6s.to_vec();
    families.dedup();
    for v6 in families {
        let listing = match engine.list(family(v6), NFT_TABLE) {
            Ok(listing) => listing,
            Err(e) if cni_net::nft::unavailable(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        for rule in listing.select(&matches) {
            batch.delete_rule(family(v6), NFT_TABLE, &rule.chain, rule.handle);
        }
    }
    engine.commit(&batch)
}

pub(super) fn check(portmap: &PortMap, ips: &[IpNet]) -> Result<()> {
    let mut engine = Nft::open()?;
    for ip in ips {
        let listing = engine.list(family(ip.addr().is_ipv6()), NFT_TABLE)?;
        nft_check(portmap, *ip, &listing)?;
    }
    Ok(())
}

/// CHECK against one family's table: the entry chains, one DNAT rule per mapping
/// with the right port and destination, and the masquerade rules.
fn nft_check(portmap: &PortMap, container: IpNet, listing: &Listing) -> Result<()> {
    let missing = |what: &str| {
        Err(NetError::Other(format!(
            "missing hostport rules in {what:?} chain"
        )))
    };
    for chain in ["prerouting", "output", "hostports_all", "hostports"] {
        if !listing.has_chain(chain) {
            return missing(chain);
        }
    }
    let v6 = container.addr().is_ipv6();
    let of =
        |chain: &str| listing.select(|r| r.chain == chain && r.comment == portmap.container_id);
    let dnats: Vec<(u16, Vec<u8>, u16)> = of("hostports")
        .iter()
        .filter_map(|r| dnat_of(&r.exprs))
        .collect();
    for m in portmap.mappings.iter().filter(|m| m.applies_to(v6)) {
        let want = (
            m.host_port,
            address_bytes(container.addr()),
            m.container_port,
        );
        if !dnats.contains(&want) {
            return missing("hostports");
        }
    }
    if portmap.snat != Snat::Off {
        let wanted = if v6 || portmap.masq_all { 1 } else { 2 };
        if of("masquerading").len() < wanted {
            return missing("masquerading");
        }
    }
    Ok(())
}

/// (host port, DNAT address, DNAT port) of a rule.
fn dnat_of(exprs: &[Expr]) -> Option<(u16, Vec<u8>, u16)> {
    let at = exprs.iter().position(
        |e| matches!(e, Expr::Payload { base, offset: 2, len: 2, .. } if *base == TRANSPORT_HEADER),
    )?;
    let port = |data: &[u8]| Some(u16::from_be_bytes(data.get(..2)?.try_into().ok()?));
    let dport = match exprs.get(at + 1)? {
        Expr::Cmp { data, .. } => port(data)?,
        _ => return None,
    };
    let mut immediates = exprs.iter().filter_map(|e| match e {
        Expr::Immediate { data, .. } => Some(data.clone()),
        _ => None,
    });
    let address = immediates.next()?;
    let to_port = port(&immediates.next()?)?;
    Some((dport, address, to_port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::portmap::model::fixtures::{mappings, portmap};
    use cni_net::nft::Rule;

    fn rule(chain: &str, handle: u64, comment: &str, exprs: Vec<Expr>) -> Rule {
        Rule {
            chain: chain.into(),
            handle,
            comment: comment.into(),
            exprs,
        }
    }

    #[test]
    fn a_new_table_gets_upstreams_skeleton_and_the_containers_rules() {
        let mappings = mappings();
        let pm = portmap(&mappings);
        let mut batch = Batch::new();
        setup_batch(
            &mut batch,
            &pm,
            "10.22.0.5/16".parse().unwrap(),
            &Listing::default(),
        )
        .unwrap();
        let t = "ip cni_hostport";
        assert_eq!(
            batch.describe(),
            [
                format!("add table {t}"),
                format!("add chain {t} hostports"),
                format!("add chain {t} hostip_hostports"),
                format!("add chain {t} hostports_all"),
                format!("add rule {t} hostports_all"),
                format!("add rule {t} hostports_all"),
                format!("add chain {t} prerouting"),
                format!("add rule {t} prerouting"),
                format!("add chain {t} output"),
                format!("add rule {t} output"),
                format!("add chain {t} masquerading"),
                // 8080 and 8443 (its host IP is IPv4); 5300's host IP is IPv6.
                format!("add rule {t} hostports"),
                format!("add rule {t} hostports"),
                format!("add rule {t} masquerading"),
                format!("add rule {t} masquerading"),
            ]
        );
        assert!(!batch.deletes());
    }

    #[test]
    fn a_skeleton_in_place_is_left_alone_and_own_rules_are_replaced() {
        let mappings = mappings();
        let pm = portmap(&mappings);
        let mut local = matches::fib_daddr_local();
        local.push(matches::verdict(Verdict::Jump("hostports_all".into())));
        let listing = Listing {
            chains: [
                "hostports",
                "hostip_hostports",
                "hostports_all",
                "prerouting",
                "output",
                "masquerading",
            ]
            .map(String::from)
            .to_vec(),
            rules: vec![
                rule(
                    "hostports_all",
                    1,
                    "",
                    vec![matches::verdict(Verdict::Jump("hostip_hostports".into()))],
                ),
                rule(
                    "hostports_all",
                    2,
                    "",
                    vec![matches::verdict(Verdict::Jump("hostports".into()))],
                ),
                rule("prerouting", 3, "", local.clone()),
                rule("output", 4, "", local),
                rule("hostports", 7, "ctr-1", vec![]),
                rule("hostports", 8, "ctr-10", vec![]),
            ],
        };
        let mut batch = Batch::new();
        setup_batch(&mut batch, &pm, "fd00::5/64".parse().unwrap(), &listing).unwrap();
        let t = "ip6 cni_hostport";
        assert_eq!(
            batch.describe(),
            [
                format!("add table {t}"),
                format!("delete rule {t} hostports handle 7"),
                // 8080, and 5300 to an IPv6 host IP; one masquerade for IPv6.
                format!("add rule {t} hostports"),
                format!("add rule {t} hostports"),
                format!("add rule {t} masquerading"),
            ]
        );
        // With conditions, the base chains are nft's: the batch does not touch them.
        let conditions = vec!["iifname".to_string(), "!=".into(), "\"lo\"".into()];
        let mut pm = portmap(&mappings);
        pm.conditions_v6 = &conditions;
        let mut batch = Batch::new();
        setup_batch(
            &mut batch,
            &pm,
            "fd00::5/64".parse().unwrap(),
            &Listing::default(),
        )
        .unwrap();
        assert!(
            !batch
                .describe()
                .iter()
                .any(|c| c.contains("prerouting") || c.contains("output"))
        );
        assert!(conditioned_skeleton(true, &conditions).contains(
            "add rule ip6 cni_hostport prerouting iifname != \"lo\" fib daddr type local jump hostports_all"
        ));
    }

    #[test]
    fn dnats_read_back_from_their_expressions() {
        let mut exprs = matches::dport(6, 8080);
        exprs.extend(matches::dnat("10.0.0.2".parse().unwrap(), 80));
        assert_eq!(dnat_of(&exprs), Some((8080, vec![10, 0, 0, 2], 80)));
    }
}
