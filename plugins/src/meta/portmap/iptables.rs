//! portmap's iptables backend (table `nat`, per family): `PREROUTING` and `OUTPUT`
//! jump to the shared `CNI-HOSTPORT-DNAT` for local destinations; it holds one entry
//! rule per protocol and group of at most 15 host ports (multiport's limit), commented
//! `dnat name: "<net>" id: "<cid>"`, that jumps to the container's own chain
//! `CNI-DN-<hash>`. That chain marks hairpin and localhost traffic for masquerade
//! (`CNI-HOSTPORT-SETMARK`, or the configured external chain) and DNATs. The shared
//! `CNI-HOSTPORT-MASQ`, entered first from `POSTROUTING`, masquerades marked packets.

use std::collections::BTreeMap;
use std::net::IpAddr;

use cni_net::netfilter::{chain_name, iptables, iptables_usable};
use cni_net::{NetError, Result};
use cni_types::net::IpNet;

use super::model::{
    DNAT_CHAIN, MASQ_CHAIN, PortMap, SETMARK_CHAIN, Snat, any_address, args, dnat_chain,
    dnat_comment, ip_port, mark, render,
};

impl PortMap<'_> {
    fn iptables_rules(&self, container: IpNet) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
        let v6 = container.addr().is_ipv6();
        let comment = dnat_comment(self.network, self.container_id);
        // Upstream lists the host ports of every mapping here, whatever its host IP's
        // family, grouped by protocol in sorted order.
        let mut by_protocol: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for m in self.mappings {
            by_protocol
                .entry(&m.protocol)
                .or_default()
                .push(m.host_port.to_string());
        }
        let mut entries = Vec::new();
        for (protocol, ports) in by_protocol {
            for group in ports.chunks(15) {
                let mut rule = args(&[
                    "-m",
                    "comment",
                    "--comment",
                    &comment,
                    "-m",
                    "multiport",
                    "-p",
                    protocol,
                    "--destination-ports",
                    &group.join(","),
                ]);
                rule.extend(self.conditions(v6).iter().cloned());
                entries.push(rule);
            }
        }

        let mut rules = Vec::new();
        for m in self.mappings.iter().filter(|m| m.applies_to(v6)) {
            let mut base = args(&["-p", &m.protocol, "--dport", &m.host_port.to_string()]);
            if let Some(ip) = m.destination() {
                base.extend(args(&["-d", &ip.to_string()]));
            }
            if let Some(target) = self.set_mark_target() {
                let source = match self.masq_all {
                    true => any_address(v6).to_string(),
                    false => container.trunc().to_string(),
                };
                rules.push([base.clone(), args(&["-s", &source, "-j", target])].concat());
                if !v6 && !self.masq_all {
                    rules.push([base.clone(), args(&["-s", "127.0.0.1", "-j", target])].concat());
                }
            }
            let to = ip_port(container.addr(), m.container_port);
            rules.push([base, args(&["-j", "DNAT", "--to-destination", &to])].concat());
        }
        (entries, rules)
    }
}

/// Writes the forwarding of each address, one restore per family.
pub(super) fn setup(portmap: &PortMap, ips: &[IpNet]) -> Result<()> {
    let mut done = Vec::new();
    for ip in ips {
        let v6 = ip.addr().is_ipv6();
        // The common ADD: the shared chains are in place and this container's
        // chain is new. `-N` fails on an existing chain and a rule fails on a
        // missing one, so the restore is its own atomic check: one process.
        // Anything else (first container, repeated ADD) reads the table.
        let fresh = iptables_setup_lines(portmap, *ip, None);
        if iptables::restore(v6, "nat", &fresh).is_ok() {
            done.push(v6);
            continue;
        }
        let listing = iptables::list(v6, "nat")?;
        let lines = iptables_setup_lines(portmap, *ip, Some(&listing));
        if let Err(e) = iptables::restore(v6, "nat", &lines) {
            // Undo the families already written, so the ADD leaves nothing.
            let _ = teardown(portmap.network, &[portmap.container_id], &done);
            return Err(e);
        }
        done.push(v6);
    }
    Ok(())
}

pub(super) fn teardown(network: &str, container_ids: &[&str], v6s: &[bool]) -> Result<()> {
    let usable: Vec<bool> = v6s
        .iter()
        .copied()
        .filter(|v6| iptables_usable(*v6))
        .collect();
    if usable.is_empty() && !v6s.is_empty() {
        return Err(NetError::Other(
            "neither iptables nor ip6tables is usable".into(),
        ));
    }
    for v6 in usable {
        apply_teardown(v6, |listing| {
            iptables_teardown_lines(network, container_ids, listing)
        })?;
    }
    Ok(())
}

/// Reads one family's nat table and applies the deleting lines `lines_for` derives
/// from it, in one restore.
fn apply_teardown(v6: bool, lines_for: impl FnOnce(&[String]) -> Vec<String>) -> Result<()> {
    let listing = iptables::list(v6, "nat")?;
    iptables::restore(v6, "nat", &lines_for(&listing)).map_err(|e| {
        e.context(format!(
            "could not teardown ipv{} dnat",
            if v6 { 6 } else { 4 }
        ))
    })
}

/// DEL of one attachment whose addresses are `ips`: its DNAT (and hairpin mark)
/// rules go; the container's chain and its entry rules go only when no other
/// address's DNAT is left in it (another attachment of the container).
pub(super) fn teardown_attachment(network: &str, container_id: &str, ips: &[IpNet]) -> Result<()> {
    for v6 in [false, true] {
        let ours: Vec<IpAddr> = ips
            .iter()
            .map(|ip| ip.addr())
            .filter(|ip| ip.is_ipv6() == v6)
            .collect();
        if ours.is_empty() || !iptables_usable(v6) {
            continue;
        }
        apply_teardown(v6, |listing| {
            attachment_teardown_lines(network, container_id, &ours, listing)
        })?;
    }
    Ok(())
}

/// The lines [`teardown_attachment`] applies to one family's listing.
fn attachment_teardown_lines(
    network: &str,
    container_id: &str,
    ours: &[IpAddr],
    listing: &[String],
) -> Vec<String> {
    let chain = dnat_chain(network, container_id);
    let head = format!("-A {chain} ");
    let rules: Vec<&String> = listing.iter().filter(|l| l.starts_with(&head)).collect();
    let target = |line: &str| -> Option<IpAddr> {
        let words = shell_words(line);
        let at = words.iter().position(|w| w == "--to-destination")?;
        let to = words.get(at + 1)?;
        let host = match to.strip_prefix('[') {
            Some(rest) => rest.split(']').next()?,
            None => to.rsplit_once(':').map_or(to.as_str(), |(h, _)| h),
        };
        host.parse().ok()
    };
    let others: Vec<IpAddr> = rules
        .iter()
        .filter_map(|l| target(l))
        .filter(|t| !ours.contains(t))
        .collect();
    if others.is_empty() {
        return iptables_teardown_lines(network, &[container_id], listing);
    }
    let source = |line: &str| -> Option<IpNet> {
        let words = shell_words(line);
        let at = words.iter().position(|w| w == "-s")?;
        let text = words.get(at + 1)?;
        text.parse::<IpNet>()
            .ok()
            .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
    };
    rules
        .into_iter()
        .filter(|l| {
            target(l).is_some_and(|t| ours.contains(&t))
                || source(l).is_some_and(|net| {
                    ours.iter().any(|o| net.contains(o)) && !others.iter().any(|o| net.contains(o))
                })
        })
        .map(|l| format!("-D {}", &l[3..]))
        .collect()
}

pub(super) fn check(portmap: &PortMap, ips: &[IpNet]) -> Result<()> {
    for ip in ips {
        let listing = iptables::list(ip.addr().is_ipv6(), "nat")?;
        iptables_check(portmap, *ip, &listing)?;
    }
    Ok(())
}

/// The iptables-restore lines that make the nat table forward `portmap` to
/// `container`, given the table's current `-S` listing. Shared chains and jumps are
/// created only when missing; the container's chain is rewritten whole, so a repeated
/// ADD converges instead of piling up rules. Without a listing, the shared chains are
/// taken as present and the container's chain as new (`-N`).
fn iptables_setup_lines(
    portmap: &PortMap,
    container: IpNet,
    listing: Option<&[String]>,
) -> Vec<String> {
    let chain = dnat_chain(portmap.network, portmap.container_id);
    let mut lines = match listing {
        Some(listing) => iptables_shared_lines(portmap, listing),
        None => vec![format!("-N {chain}")],
    };
    let (entries, rules) = portmap.iptables_rules(container);
    if listing.is_some() {
        // Declaring the chain creates it or flushes it.
        lines.push(format!(":{chain} - [0:0]"));
    }
    for rule in &rules {
        lines.push(format!("-A {chain} {}", render(rule)));
    }
    if let Some(listing) = listing {
        lines.extend(iptables::jumps_to(listing, DNAT_CHAIN, &chain));
    }
    // Prepended, so the newest container using a host port wins, without moving
    // CNI-HOSTPORT-DNAT ahead of other rules in PREROUTING and OUTPUT.
    for entry in &entries {
        lines.push(format!("-I {DNAT_CHAIN} 1 {} -j {chain}", render(entry)));
    }
    lines
}

/// The lines that create the shared chains and their jumps where `listing` lacks
/// them, and rewrite the mark chains when their mark differs.
fn iptables_shared_lines(portmap: &PortMap, listing: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    if let Snat::MarkBit(bit) = portmap.snat {
        let mark = mark(bit);
        let wanted = [
            (
                SETMARK_CHAIN,
                format!(
                    "-A {SETMARK_CHAIN} -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark {mark}"
                ),
            ),
            (
                MASQ_CHAIN,
                format!("-A {MASQ_CHAIN} -m mark --mark {mark} -j MASQUERADE"),
            ),
        ];
        for (chain, rule) in wanted {
            let head = format!("-A {chain} ");
            let current: Vec<&String> = listing.iter().filter(|l| l.starts_with(&head)).collect();
            // Rewritten only when it differs: the mark bit of the last ADD wins, for
            // the marking and the masquerading alike, so both always agree.
            if current != [&rule] {
                lines.push(format!(":{chain} - [0:0]"));
                lines.push(rule);
            }
        }
        if iptables::jumps_to(listing, "POSTROUTING", MASQ_CHAIN).is_empty() {
            lines.push(format!(
                "-I POSTROUTING 1 -m comment --comment \"CNI portfwd requiring masquerade\" -j {MASQ_CHAIN}"
            ));
        }
    }
    if !iptables::has_chain(listing, DNAT_CHAIN) {
        lines.push(format!(":{DNAT_CHAIN} - [0:0]"));
    }
    for entry in ["PREROUTING", "OUTPUT"] {
        if iptables::jumps_to(listing, entry, DNAT_CHAIN).is_empty() {
            lines.push(format!(
                "-A {entry} -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}"
            ));
        }
    }
    lines
}

/// The lines that remove the containers' chains (and any jump to them, from any
/// chain) from a nat table listing, plus the `CNI-SN-` chains of old versions.
fn iptables_teardown_lines(
    network: &str,
    container_ids: &[&str],
    listing: &[String],
) -> Vec<String> {
    let mut lines = Vec::new();
    for id in container_ids {
        for chain in [dnat_chain(network, id), chain_name("CNI-SN-", network, id)] {
            lines.extend(iptables::jumps_to_any(listing, &chain));
            if iptables::has_chain(listing, &chain) {
                lines.push(format!("-F {chain}"));
                lines.push(format!("-X {chain}"));
            }
        }
    }
    lines
}

/// The container IDs of `network` that have iptables forwarding in a nat listing,
/// read from the entry rules' comments.
fn iptables_containers(network: &str, listing: &[String]) -> Vec<String> {
    let prefix = format!("--comment \"dnat name: \\\"{network}\\\" id: \\\"");
    let mut ids: Vec<String> = listing
        .iter()
        .filter(|l| l.starts_with(&format!("-A {DNAT_CHAIN} ")))
        .filter_map(|l| {
            let rest = &l[l.find(&prefix)? + prefix.len()..];
            Some(rest[..rest.find("\\\"")?].to_string())
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// GC for iptables: removes the forwarding of every container of `network` whose ID
/// `keep` rejects, in both families. Returns the IDs removed.
pub(super) fn gc(network: &str, keep: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for v6 in [false, true] {
        if !iptables_usable(v6) {
            continue;
        }
        let listing = iptables::list(v6, "nat")?;
        let stale: Vec<String> = iptables_containers(network, &listing)
            .into_iter()
            .filter(|id| !keep(id))
            .collect();
        let ids: Vec<&str> = stale.iter().map(String::as_str).collect();
        iptables::restore(v6, "nat", &iptables_teardown_lines(network, &ids, &listing))?;
        removed.extend(stale);
    }
    removed.sort();
    removed.dedup();
    Ok(removed)
}

/// CHECK against a nat listing: the container chain with every rule, its entry rules,
/// and the shared jumps.
fn iptables_check(portmap: &PortMap, container: IpNet, listing: &[String]) -> Result<()> {
    let chain = dnat_chain(portmap.network, portmap.container_id);
    if !iptables::has_chain(listing, &chain) {
        return Err(NetError::Other(format!(
            "chain {chain} not found in iptables table nat"
        )));
    }
    let (entries, rules) = portmap.iptables_rules(container);
    let mut wanted: Vec<(String, Vec<String>)> =
        rules.into_iter().map(|r| (chain.clone(), r)).collect();
    for mut entry in entries {
        entry.extend(args(&["-j", &chain]));
        wanted.push((DNAT_CHAIN.to_string(), entry));
    }
    for from in ["PREROUTING", "OUTPUT"] {
        wanted.push((
            from.to_string(),
            args(&["-m", "addrtype", "--dst-type", "LOCAL", "-j", DNAT_CHAIN]),
        ));
    }
    if let Snat::MarkBit(_) = portmap.snat {
        wanted.push((
            "POSTROUTING".to_string(),
            args(&[
                "-m",
                "comment",
                "--comment",
                "CNI portfwd requiring masquerade",
                "-j",
                MASQ_CHAIN,
            ]),
        ));
    }
    for (in_chain, rule) in wanted {
        let want = normalized(&rule);
        let head = format!("-A {in_chain} ");
        let found = listing
            .iter()
            .filter_map(|l| l.strip_prefix(&head))
            .any(|l| normalized(&shell_words(l)) == want);
        if !found {
            return Err(NetError::Other(format!(
                "rule {:?} in chain {in_chain} not found in table nat",
                render(&rule)
            )));
        }
    }
    Ok(())
}

/// An iptables argument list in a form that compares equal to what `iptables -S`
/// prints for it: implicit protocol matches dropped, long option aliases folded,
/// host addresses given their prefix length, order ignored.
fn normalized(rule: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rule.len() {
        let token = rule[i].as_str();
        let next = rule.get(i + 1).map(String::as_str);
        match (token, next) {
            ("-m", Some("tcp" | "udp" | "sctp")) => i += 2,
            ("-s" | "-d" | "--source" | "--destination", Some(addr)) => {
                let addr = match addr.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip).to_string(),
                    Err(_) => addr.to_string(),
                };
                out.push(if token.starts_with("-s") || token == "--source" {
                    "-s".to_string()
                } else {
                    "-d".to_string()
                });
                out.push(addr);
                i += 2;
            }
            ("--destination-ports", _) => {
                out.push("--dports".to_string());
                i += 1;
            }
            ("--destination-port", _) => {
                out.push("--dport".to_string());
                i += 1;
            }
            _ => {
                out.push(token.to_string());
                i += 1;
            }
        }
    }
    out.sort();
    out
}

/// Splits an `iptables -S` line into arguments (double quotes with backslash
/// escapes, as iptables prints comments).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::portmap::model::Mapping;
    use crate::meta::portmap::model::fixtures::{mappings, portmap};

    #[test]
    fn without_a_listing_only_the_new_container_chain_and_its_jumps_are_written() {
        let mappings = mappings();
        let pm = portmap(&mappings);
        let chain = dnat_chain("mynet", "ctr-1");
        let ip = "10.22.0.5/16".parse().unwrap();
        let fresh = iptables_setup_lines(&pm, ip, None);
        let full = iptables_setup_lines(&pm, ip, Some(&[]));
        assert_eq!(fresh[0], format!("-N {chain}"));
        // The same container lines as a full setup, and nothing shared.
        let container_part = full
            .iter()
            .skip_while(|l| !l.starts_with(&format!(":{chain}")))
            .skip(1);
        assert!(fresh[1..].iter().eq(container_part));
        assert!(fresh.iter().all(|l| !l.starts_with(':')
            && !l.contains("POSTROUTING")
            && !l.contains("PREROUTING")
            && !l.starts_with("-A CNI-HOSTPORT-")));
    }

    #[test]
    fn iptables_setup_on_an_empty_table_has_upstreams_shapes() {
        let mappings = mappings();
        let pm = portmap(&mappings);
        let chain = dnat_chain("mynet", "ctr-1");
        let lines = iptables_setup_lines(&pm, "10.22.0.5/16".parse().unwrap(), Some(&[]));
        let expected = vec![
            ":CNI-HOSTPORT-SETMARK - [0:0]".to_string(),
            "-A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000".into(),
            ":CNI-HOSTPORT-MASQ - [0:0]".into(),
            "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE".into(),
            "-I POSTROUTING 1 -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ".into(),
            ":CNI-HOSTPORT-DNAT - [0:0]".into(),
            "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT".into(),
            "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT".into(),
            format!(":{chain} - [0:0]"),
            format!("-A {chain} -p tcp --dport 8080 -s 10.22.0.0/16 -j CNI-HOSTPORT-SETMARK"),
            format!("-A {chain} -p tcp --dport 8080 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK"),
            format!("-A {chain} -p tcp --dport 8080 -j DNAT --to-destination 10.22.0.5:80"),
            format!("-A {chain} -p tcp --dport 8443 -d 192.0.2.1 -s 10.22.0.0/16 -j CNI-HOSTPORT-SETMARK"),
            format!("-A {chain} -p tcp --dport 8443 -d 192.0.2.1 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK"),
            format!("-A {chain} -p tcp --dport 8443 -d 192.0.2.1 -j DNAT --to-destination 10.22.0.5:443"),
            format!("-I CNI-HOSTPORT-DNAT 1 -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-1\\\"\" -m multiport -p tcp --destination-ports 8080,8443 -j {chain}"),
            format!("-I CNI-HOSTPORT-DNAT 1 -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-1\\\"\" -m multiport -p udp --destination-ports 5300 -j {chain}"),
        ];
        assert_eq!(lines, expected);
    }

    #[test]
    fn iptables_setup_reuses_shared_chains_and_replaces_own_entries() {
        let mappings = mappings()[..1].to_vec();
        let mut pm = portmap(&mappings);
        pm.masq_all = true;
        pm.conditions_v6 = &[];
        let chain = dnat_chain("mynet", "ctr-1");
        let listing: Vec<String> = [
            "-N CNI-HOSTPORT-DNAT".to_string(),
            "-N CNI-HOSTPORT-MASQ".into(),
            "-N CNI-HOSTPORT-SETMARK".into(),
            format!("-N {chain}"),
            "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT".into(),
            "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT".into(),
            "-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ".into(),
            format!("-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-1\\\"\" -m multiport --dports 9090 -j {chain}"),
            "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE".into(),
            "-A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000".into(),
        ]
        .to_vec();
        let lines = iptables_setup_lines(&pm, "fd00::5/64".parse().unwrap(), Some(&listing));
        assert_eq!(
            lines,
            vec![
                format!(":{chain} - [0:0]"),
                format!("-A {chain} -p tcp --dport 8080 -s ::/0 -j CNI-HOSTPORT-SETMARK"),
                format!("-A {chain} -p tcp --dport 8080 -j DNAT --to-destination [fd00::5]:80"),
                format!(
                    "-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-1\\\"\" -m multiport --dports 9090 -j {chain}"
                ),
                format!(
                    "-I CNI-HOSTPORT-DNAT 1 -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-1\\\"\" -m multiport -p tcp --destination-ports 8080 -j {chain}"
                ),
            ]
        );
        // A different mark bit rewrites both shared chains.
        pm.snat = Snat::MarkBit(0);
        let lines = iptables_setup_lines(&pm, "fd00::5/64".parse().unwrap(), Some(&listing));
        assert!(
            lines
                .contains(&"-A CNI-HOSTPORT-MASQ -m mark --mark 0x1/0x1 -j MASQUERADE".to_string())
        );
        assert!(lines.contains(&":CNI-HOSTPORT-SETMARK - [0:0]".to_string()));
    }

    #[test]
    fn external_mark_chain_conditions_and_port_groups() {
        let mappings: Vec<Mapping> = (1..=16)
            .map(|p| Mapping {
                host_port: 1000 + p,
                container_port: p,
                protocol: "tcp".into(),
                host_ip: None,
            })
            .collect();
        let mut pm = portmap(&mappings);
        pm.snat = Snat::External("KUBE-MARK-MASQ".into());
        let conditions = vec!["!".to_string(), "-s".into(), "10.0.0.0/8".into()];
        pm.conditions_v4 = &conditions;
        let lines = iptables_setup_lines(&pm, "10.22.0.5/16".parse().unwrap(), Some(&[]));
        assert!(!lines.iter().any(|l| l.contains("SETMARK - ")));
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with("-s 127.0.0.1 -j KUBE-MARK-MASQ"))
        );
        let entries: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("-I CNI-HOSTPORT-DNAT"))
            .collect();
        assert_eq!(entries.len(), 2, "16 ports make two multiport groups");
        assert!(entries[0].contains("--destination-ports 1001,1002,1003,1004,1005,1006,1007,1008,1009,1010,1011,1012,1013,1014,1015 ! -s 10.0.0.0/8 -j"));
        assert!(entries[1].contains("--destination-ports 1016 ! -s 10.0.0.0/8 -j"));
        pm.snat = Snat::Off;
        let lines = iptables_setup_lines(&pm, "10.22.0.5/16".parse().unwrap(), Some(&[]));
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("MARK") || l.contains("MASQ"))
        );
    }

    #[test]
    fn teardown_finds_every_jump_and_legacy_chains() {
        let dn = dnat_chain("mynet", "ctr-1");
        let sn = chain_name("CNI-SN-", "mynet", "ctr-1");
        let other = dnat_chain("mynet", "ctr-2");
        let listing: Vec<String> = [
            format!("-N {dn}"),
            format!("-N {sn}"),
            format!("-N {other}"),
            format!("-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-1\\\"\" -m multiport --dports 80 -j {dn}"),
            format!("-A CNI-HOSTPORT-DNAT -p udp -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-1\\\"\" -m multiport --dports 53 -j {dn}"),
            format!("-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-2\\\"\" -m multiport --dports 81 -j {other}"),
            format!("-A CNI-HOSTPORT-SNAT -j {sn}"),
            format!("-A {dn} -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.2:80"),
        ]
        .to_vec();
        let lines = iptables_teardown_lines("mynet", &["ctr-1"], &listing);
        assert_eq!(
            lines,
            vec![
                format!(
                    "-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-1\\\"\" -m multiport --dports 80 -j {dn}"
                ),
                format!(
                    "-D CNI-HOSTPORT-DNAT -p udp -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-1\\\"\" -m multiport --dports 53 -j {dn}"
                ),
                format!("-F {dn}"),
                format!("-X {dn}"),
                format!("-D CNI-HOSTPORT-SNAT -j {sn}"),
                format!("-F {sn}"),
                format!("-X {sn}"),
            ]
        );
        assert_eq!(
            iptables_containers("mynet", &listing),
            vec!["ctr-1", "ctr-2"]
        );
        assert!(iptables_containers("other", &listing).is_empty());
        assert!(iptables_teardown_lines("mynet", &["gone"], &listing).is_empty());
    }

    #[test]
    fn check_compares_with_what_iptables_prints() {
        let mappings = mappings();
        let pm = portmap(&mappings);
        let chain = dnat_chain("mynet", "ctr-1");
        // What `iptables -t nat -S` printed after the setup above.
        let mut listing: Vec<String> = [
            format!("-N {chain}"),
            "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT".into(),
            "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT".into(),
            "-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ".into(),
            format!("-A {chain} -s 10.22.0.0/16 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK"),
            format!("-A {chain} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK"),
            format!("-A {chain} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.22.0.5:80"),
            format!("-A {chain} -s 10.22.0.0/16 -d 192.0.2.1/32 -p tcp -m tcp --dport 8443 -j CNI-HOSTPORT-SETMARK"),
            format!("-A {chain} -s 127.0.0.1/32 -d 192.0.2.1/32 -p tcp -m tcp --dport 8443 -j CNI-HOSTPORT-SETMARK"),
            format!("-A {chain} -d 192.0.2.1/32 -p tcp -m tcp --dport 8443 -j DNAT --to-destination 10.22.0.5:443"),
            format!("-A CNI-HOSTPORT-DNAT -p udp -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-1\\\"\" -m multiport --dports 5300 -j {chain}"),
            format!("-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-1\\\"\" -m multiport --dports 8080,8443 -j {chain}"),
        ]
        .to_vec();
        let ip: IpNet = "10.22.0.5/16".parse().unwrap();
        iptables_check(&pm, ip, &listing).unwrap();
        listing.remove(6);
        let e = iptables_check(&pm, ip, &listing).unwrap_err().to_string();
        assert!(e.contains("--to-destination 10.22.0.5:80"), "{e}");
        listing.remove(0);
        let e = iptables_check(&pm, ip, &listing).unwrap_err().to_string();
        assert_eq!(e, format!("chain {chain} not found in iptables table nat"));
    }

    #[test]
    fn a_del_of_one_attachment_keeps_the_others_forwarding() {
        let chain = dnat_chain("mynet", "ctr-1");
        let listing: Vec<String> = [
            format!("-N {chain}"),
            format!("-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"mynet\\\" id: \\\"ctr-1\\\"\" -m multiport --dports 80 -j {chain}"),
            format!("-A {chain} -s 10.22.0.0/16 -p tcp -m tcp --dport 80 -j CNI-HOSTPORT-SETMARK"),
            format!("-A {chain} -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.22.0.5:80"),
            format!("-A {chain} -s 10.30.0.0/24 -p tcp -m tcp --dport 81 -j CNI-HOSTPORT-SETMARK"),
            format!("-A {chain} -p tcp -m tcp --dport 81 -j DNAT --to-destination 10.30.0.7:81"),
        ]
        .to_vec();
        let eth1: IpAddr = "10.30.0.7".parse().unwrap();
        let lines = attachment_teardown_lines("mynet", "ctr-1", &[eth1], &listing);
        assert_eq!(
            lines,
            vec![
                format!(
                    "-D {chain} -s 10.30.0.0/24 -p tcp -m tcp --dport 81 -j CNI-HOSTPORT-SETMARK"
                ),
                format!(
                    "-D {chain} -p tcp -m tcp --dport 81 -j DNAT --to-destination 10.30.0.7:81"
                ),
            ]
        );
        // The last attachment: the chain and its entry rules go.
        let eth0: IpAddr = "10.22.0.5".parse().unwrap();
        let all = attachment_teardown_lines("mynet", "ctr-1", &[eth0, eth1], &listing);
        assert!(all.contains(&format!("-X {chain}")), "{all:#?}");
    }

    #[test]
    fn shell_words_read_iptables_quoting() {
        assert_eq!(
            shell_words(r#"-m comment --comment "dnat name: \"n\" id: \"c\"" -j X"#),
            vec![
                "-m",
                "comment",
                "--comment",
                r#"dnat name: "n" id: "c""#,
                "-j",
                "X"
            ]
        );
        assert_eq!(
            render(&args(&["--comment", "a b", "-j", "X"])),
            "--comment \"a b\" -j X"
        );
    }
}
