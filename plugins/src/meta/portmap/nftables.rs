//! portmap's nftables backend (tables `ip cni_hostport` and `ip6 cni_hostport`): the
//! base chains `prerouting` and `output` jump to `hostports_all`, which jumps to the
//! legacy `hostip_hostports` (kept empty) and `hostports`; every mapping is one DNAT
//! rule in `hostports` and the hairpin/localhost masquerades are rules in
//! `masquerading`, all commented with the container ID.

use cni_net::netfilter::nft;
use cni_net::{NetError, Result};
use cni_types::net::IpNet;
use serde_json::{Value, json};

use super::model::{
    NFT_RULE_CHAINS, NFT_TABLE, NFT_TABLE_COMMENT, PortMap, Snat, any_address, ip_port,
};

impl PortMap<'_> {
    fn nft_rules(&self, container: IpNet) -> Vec<(&'static str, String)> {
        let ip = container.addr();
        let v6 = ip.is_ipv6();
        let family = if v6 { "ip6" } else { "ip" };
        let comment = format!("comment \"{}\"", self.container_id);
        let mut rules = Vec::new();
        for m in self.mappings.iter().filter(|m| m.applies_to(v6)) {
            let daddr = m
                .destination()
                .map(|d| format!("{family} daddr {d} "))
                .unwrap_or_default();
            rules.push((
                "hostports",
                format!(
                    "{daddr}{} dport {} dnat to {} {comment}",
                    m.protocol,
                    m.host_port,
                    ip_port(ip, m.container_port)
                ),
            ));
        }
        if self.snat != Snat::Off {
            let source = match self.masq_all {
                true => any_address(v6).to_string(),
                false => ip.to_string(),
            };
            rules.push((
                "masquerading",
                format!("{family} saddr {source} {family} daddr {ip} masquerade {comment}"),
            ));
            if !v6 && !self.masq_all {
                rules.push((
                    "masquerading",
                    format!("ip saddr 127.0.0.1 ip daddr {ip} masquerade {comment}"),
                ));
            }
        }
        rules
    }
}

/// Writes the forwarding of every address in one `nft -f`.
pub(super) fn setup(portmap: &PortMap, ips: &[IpNet]) -> Result<()> {
    let mut script = Vec::new();
    for ip in ips {
        let v6 = ip.addr().is_ipv6();
        let listing = nft::list(nft_family(v6), NFT_TABLE)?;
        script.extend(nft_setup_lines(portmap, *ip, &listing));
    }
    nft::apply(&script_text(&script))
        .map_err(|e| e.context("unable to set up nftables rules for port mappings"))
}

pub(super) fn teardown(container_ids: &[&str], v6s: &[bool]) -> Result<()> {
    let mut script = Vec::new();
    for v6 in v6s {
        let listing = nft::list(nft_family(*v6), NFT_TABLE)?;
        let table = format!("{} {NFT_TABLE}", nft_family(*v6));
        for id in container_ids {
            script.extend(nft_deletes(&table, &listing, id));
        }
    }
    nft::apply(&script_text(&script)).map_err(|e| e.context("error deleting nftables rules"))
}

/// DEL of one attachment whose addresses are `ips`: the container's rules that
/// forward to or masquerade for those addresses (the comment is the container ID
/// alone, so the address in the rule tells the attachments apart).
pub(super) fn teardown_attachment(container_id: &str, ips: &[IpNet]) -> Result<()> {
    let mut script = Vec::new();
    for v6 in [false, true] {
        let ours: Vec<String> = ips
            .iter()
            .filter(|ip| ip.addr().is_ipv6() == v6)
            .map(|ip| format!("\"{}\"", ip.addr()))
            .collect();
        if ours.is_empty() {
            continue;
        }
        let listing = nft::list(nft_family(v6), NFT_TABLE)?;
        let table = format!("{} {NFT_TABLE}", nft_family(v6));
        script.extend(listing.delete_rules(&table, |r| {
            NFT_RULE_CHAINS.contains(&r.chain.as_str())
                && r.comment == container_id
                && ours
                    .iter()
                    .any(|ip| r.expr.to_string().contains(ip.as_str()))
        }));
    }
    nft::apply(&script_text(&script)).map_err(|e| e.context("error deleting nftables rules"))
}

pub(super) fn check(portmap: &PortMap, ips: &[IpNet]) -> Result<()> {
    for ip in ips {
        let listing = nft::list(nft_family(ip.addr().is_ipv6()), NFT_TABLE)?;
        nft_check(portmap, *ip, &listing)?;
    }
    Ok(())
}

fn nft_family(v6: bool) -> &'static str {
    if v6 { "ip6" } else { "ip" }
}

fn script_text(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        lines.join("\n") + "\n"
    }
}

/// The `nft -f` lines for one family: the table's skeleton (its base chains
/// rewritten, so the last ADD's conditions apply, as upstream; left alone when it is
/// already exactly in place and there are no conditions), the removal of this
/// container's earlier rules (upstream duplicates them on a repeated ADD), and its
/// rules.
fn nft_setup_lines(portmap: &PortMap, container: IpNet, listing: &nft::Listing) -> Vec<String> {
    let v6 = container.addr().is_ipv6();
    let t = format!("{} {NFT_TABLE}", nft_family(v6));
    let conditions = portmap
        .conditions(v6)
        .iter()
        .map(|c| format!("{c} "))
        .collect::<String>();
    let mut lines = vec![format!(
        "add table {t} {{ comment \"{NFT_TABLE_COMMENT}\" ; }}"
    )];
    // Touching an existing base chain makes the kernel update its hook, a 10–20 ms
    // commit against ~2 ms for adding rules: the skeleton is written only when the
    // listing does not show it exactly as it would be (always with conditions, which
    // only nft can compare).
    if !(conditions.is_empty() && nft_skeleton_in_place(portmap, listing)) {
        lines.extend([
            format!("add chain {t} hostports"),
            format!("add chain {t} hostip_hostports"),
            format!("add chain {t} hostports_all"),
            format!("flush chain {t} hostports_all"),
            format!("add rule {t} hostports_all jump hostip_hostports"),
            format!("add rule {t} hostports_all jump hostports"),
        ]);
        for (chain, hook) in [("prerouting", "prerouting"), ("output", "output")] {
            lines.push(format!(
                "add chain {t} {chain} {{ type nat hook {hook} priority -100 ; }}"
            ));
            lines.push(format!("flush chain {t} {chain}"));
            lines.push(format!(
                "add rule {t} {chain} {conditions}fib daddr type local jump hostports_all"
            ));
        }
        if portmap.snat != Snat::Off {
            lines.push(format!(
                "add chain {t} masquerading {{ type nat hook postrouting priority 100 ; }}"
            ));
        }
    }
    lines.extend(nft_deletes(&t, listing, portmap.container_id));
    for (chain, rule) in portmap.nft_rules(container) {
        lines.push(format!("add rule {t} {chain} {rule}"));
    }
    lines
}

/// Whether a family's table already has the chains and base-chain rules that
/// [`nft_setup_lines`] writes without conditions, as `nft -j` shows them.
fn nft_skeleton_in_place(portmap: &PortMap, listing: &nft::Listing) -> bool {
    let jump = |target: &str| json!([{"jump": {"target": target}}]);
    let local_to_all = json!([
        {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
        {"jump": {"target": "hostports_all"}},
    ]);
    let has = |chain: &str| listing.chains.iter().any(|c| c == chain);
    has("hostports")
        && has("hostip_hostports")
        && listing.chain_holds(
            "hostports_all",
            &[jump("hostip_hostports"), jump("hostports")],
        )
        && listing.chain_holds("prerouting", std::slice::from_ref(&local_to_all))
        && listing.chain_holds("output", std::slice::from_ref(&local_to_all))
        && (portmap.snat == Snat::Off || has("masquerading"))
}

/// `delete rule` lines for a container's rules in one family's table.
fn nft_deletes(table: &str, listing: &nft::Listing, container_id: &str) -> Vec<String> {
    listing.delete_rules(table, |r| {
        NFT_RULE_CHAINS.contains(&r.chain.as_str()) && r.comment == container_id
    })
}

/// CHECK against one family's nft table: the entry chains, one DNAT rule per
/// mapping with the right port and destination, and the masquerade rules.
fn nft_check(portmap: &PortMap, container: IpNet, listing: &nft::Listing) -> Result<()> {
    let missing = |what: &str| {
        Err(NetError::Other(format!(
            "missing hostport rules in {what:?} chain"
        )))
    };
    for chain in ["prerouting", "output", "hostports_all", "hostports"] {
        if !listing.chains.iter().any(|c| c == chain) {
            return missing(chain);
        }
    }
    let v6 = container.addr().is_ipv6();
    let ours = |chain: &str| {
        listing
            .rules
            .iter()
            .filter(|r| r.chain == chain && r.comment == portmap.container_id)
            .collect::<Vec<_>>()
    };
    let dnats: Vec<(u64, String, u64)> = ours("hostports")
        .iter()
        .filter_map(|r| nft_dnat(&r.expr))
        .collect();
    for m in portmap.mappings.iter().filter(|m| m.applies_to(v6)) {
        let want = (
            u64::from(m.host_port),
            container.addr().to_string(),
            u64::from(m.container_port),
        );
        if !dnats.contains(&want) {
            return missing("hostports");
        }
    }
    if portmap.snat != Snat::Off {
        let wanted = if v6 || portmap.masq_all { 1 } else { 2 };
        if ours("masquerading").len() < wanted {
            return missing("masquerading");
        }
    }
    Ok(())
}

/// (host port, DNAT address, DNAT port) of a rule's JSON statements.
fn nft_dnat(expr: &Value) -> Option<(u64, String, u64)> {
    let statements = expr.as_array()?;
    let dport = statements.iter().find_map(|s| {
        let m = s.get("match")?;
        (m["left"]["payload"]["field"] == "dport")
            .then(|| m["right"].as_u64())
            .flatten()
    })?;
    let dnat = statements.iter().find_map(|s| s.get("dnat"))?;
    Some((
        dport,
        dnat["addr"].as_str()?.to_string(),
        dnat["port"].as_u64()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::portmap::model::fixtures::{mappings, portmap};

    #[test]
    fn nft_setup_builds_both_chain_levels_and_replaces_own_rules() {
        let mappings = mappings();
        let mut pm = portmap(&mappings);
        let conditions = vec!["iifname".to_string(), "!=".into(), "\"lo\"".into()];
        pm.conditions_v6 = &conditions;
        let listing = nft::Listing {
            chains: vec!["hostports".into()],
            rules: vec![
                nft::Rule {
                    chain: "hostports".into(),
                    handle: 7,
                    comment: "ctr-1".into(),
                    expr: Value::Null,
                },
                nft::Rule {
                    chain: "hostports".into(),
                    handle: 8,
                    comment: "ctr-10".into(),
                    expr: Value::Null,
                },
            ],
        };
        let lines = nft_setup_lines(&pm, "fd00::5/64".parse().unwrap(), &listing);
        let t = "ip6 cni_hostport";
        assert_eq!(
            lines,
            vec![
                format!("add table {t} {{ comment \"CNI portmap plugin\" ; }}"),
                format!("add chain {t} hostports"),
                format!("add chain {t} hostip_hostports"),
                format!("add chain {t} hostports_all"),
                format!("flush chain {t} hostports_all"),
                format!("add rule {t} hostports_all jump hostip_hostports"),
                format!("add rule {t} hostports_all jump hostports"),
                format!("add chain {t} prerouting {{ type nat hook prerouting priority -100 ; }}"),
                format!("flush chain {t} prerouting"),
                format!(
                    "add rule {t} prerouting iifname != \"lo\" fib daddr type local jump hostports_all"
                ),
                format!("add chain {t} output {{ type nat hook output priority -100 ; }}"),
                format!("flush chain {t} output"),
                format!(
                    "add rule {t} output iifname != \"lo\" fib daddr type local jump hostports_all"
                ),
                format!(
                    "add chain {t} masquerading {{ type nat hook postrouting priority 100 ; }}"
                ),
                format!("delete rule {t} hostports handle 7"),
                format!(
                    "add rule {t} hostports tcp dport 8080 dnat to [fd00::5]:80 comment \"ctr-1\""
                ),
                format!(
                    "add rule {t} hostports ip6 daddr 2001:db8::1 udp dport 5300 dnat to [fd00::5]:53 comment \"ctr-1\""
                ),
                format!(
                    "add rule {t} masquerading ip6 saddr fd00::5 ip6 daddr fd00::5 masquerade comment \"ctr-1\""
                ),
            ]
        );
        let v4 = nft_setup_lines(
            &pm,
            "10.22.0.5/16".parse().unwrap(),
            &nft::Listing::default(),
        );
        assert!(v4.contains(&"add rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.22.0.5 masquerade comment \"ctr-1\"".to_string()));
        assert!(v4.contains(&"add rule ip cni_hostport hostports ip daddr 192.0.2.1 tcp dport 8443 dnat to 10.22.0.5:443 comment \"ctr-1\"".to_string()));
        assert!(
            v4.contains(
                &"add rule ip cni_hostport prerouting fib daddr type local jump hostports_all"
                    .to_string()
            )
        );
    }

    #[test]
    fn nft_setup_leaves_a_skeleton_in_place_alone_unless_there_are_conditions() {
        let mappings = mappings();
        let mut pm = portmap(&mappings);
        // The base-chain rules as `nft -j list table ip cni_hostport` (nft 1.0.6)
        // shows them.
        let shown = |chain: &str, expr: &str| nft::Rule {
            chain: chain.into(),
            handle: 1,
            comment: String::new(),
            expr: serde_json::from_str(expr).unwrap(),
        };
        let local = r#"[{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"jump": {"target": "hostports_all"}}]"#;
        let listing = nft::Listing {
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
                shown(
                    "hostports_all",
                    r#"[{"jump": {"target": "hostip_hostports"}}]"#,
                ),
                shown("hostports_all", r#"[{"jump": {"target": "hostports"}}]"#),
                shown("prerouting", local),
                shown("output", local),
            ],
        };
        let container = "10.22.0.5/16".parse().unwrap();
        let lines = nft_setup_lines(&pm, container, &listing);
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("add chain") || l.starts_with("flush")),
            "{lines:#?}"
        );
        assert_eq!(
            lines.len(),
            1 + 2 + 2,
            "table, 2 DNATs, 2 masquerades: {lines:#?}"
        );

        let mut partial = listing;
        partial.rules.pop();
        let lines = nft_setup_lines(&pm, container, &partial);
        assert!(lines.contains(&"flush chain ip cni_hostport output".to_string()));

        let conditions = vec!["iifname".to_string(), "!=".into(), "\"lo\"".into()];
        pm.conditions_v4 = &conditions;
        partial.rules.push(shown("output", local));
        let lines = nft_setup_lines(&pm, container, &partial);
        assert!(lines.contains(&"flush chain ip cni_hostport prerouting".to_string()));
    }
}
