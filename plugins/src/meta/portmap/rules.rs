//! Host-port forwarding for portmap (upstream `plugins/meta/portmap`), in both
//! backends, with upstream's table, chain and comment names so either
//! implementation's DEL removes the other's rules.
//!
//! iptables (table `nat`, per family): `PREROUTING` and `OUTPUT` jump to the shared
//! `CNI-HOSTPORT-DNAT` for local destinations; it holds one entry rule per protocol
//! and group of at most 15 host ports (multiport's limit), commented
//! `dnat name: "<net>" id: "<cid>"`, that jumps to the container's own chain
//! `CNI-DN-<hash>`. That chain marks hairpin and localhost traffic for masquerade
//! (`CNI-HOSTPORT-SETMARK`, or the configured external chain) and DNATs. The shared
//! `CNI-HOSTPORT-MASQ`, entered first from `POSTROUTING`, masquerades marked packets.
//!
//! nftables (tables `ip cni_hostport` and `ip6 cni_hostport`): the base chains
//! `prerouting` and `output` jump to `hostports_all`, which jumps to the legacy
//! `hostip_hostports` (kept empty) and `hostports`; every mapping is one DNAT rule in
//! `hostports` and the hairpin/localhost masquerades are rules in `masquerading`, all
//! commented with the container ID.
//!
//! Every call reads the state once and writes it in one transaction per iptables
//! family (`iptables-restore --noflush`) or one `nft -f -` for both families.

use std::collections::BTreeMap;
use std::net::IpAddr;

use cni_types::net::IpNet;
use serde_json::{Value, json};

use cni_net::netfilter::{Backend, chain_name, iptables, iptables_usable, nft};
use cni_net::{NetError, Result};

/// The shared chains; upgrades depend on these names never changing.
pub const DNAT_CHAIN: &str = "CNI-HOSTPORT-DNAT";
pub const SETMARK_CHAIN: &str = "CNI-HOSTPORT-SETMARK";
pub const MASQ_CHAIN: &str = "CNI-HOSTPORT-MASQ";

pub const NFT_TABLE: &str = "cni_hostport";
const NFT_TABLE_COMMENT: &str = "CNI portmap plugin";
/// The nft chains holding per-container rules (commented with the container ID).
const NFT_RULE_CHAINS: [&str; 3] = ["hostports", "hostip_hostports", "masquerading"];

/// One `runtimeConfig.portMappings` entry, validated.
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
    fn applies_to(&self, v6: bool) -> bool {
        self.host_ip.is_none_or(|ip| ip.is_ipv6() == v6)
    }

    /// The destination to match, if any (an unspecified host IP matches all).
    fn destination(&self) -> Option<IpAddr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }
}

/// How hairpin and localhost traffic gets masqueraded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snat {
    /// `snat: false`.
    Off,
    /// Mark with this bit in `CNI-HOSTPORT-SETMARK`; `CNI-HOSTPORT-MASQ` masquerades.
    MarkBit(u8),
    /// Jump to this chain, which someone else maintains (`externalSetMarkChain`).
    External(String),
}

/// One container's port forwarding.
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
fn dnat_comment(network: &str, container_id: &str) -> String {
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

fn mark(bit: u8) -> String {
    let value = 1u32 << bit;
    format!("{value:#x}/{value:#x}")
}

fn ip_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

impl PortMap<'_> {
    fn conditions(&self, v6: bool) -> &[String] {
        if v6 {
            self.conditions_v6
        } else {
            self.conditions_v4
        }
    }

    fn set_mark_target(&self) -> Option<&str> {
        match &self.snat {
            Snat::Off => None,
            Snat::MarkBit(_) => Some(SETMARK_CHAIN),
            Snat::External(chain) => Some(chain),
        }
    }

    /// The entry rules (in `CNI-HOSTPORT-DNAT`, without the final `-j <chain>`) and the
    /// container chain's rules for container address `container`, as argument lists.
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

    /// The nft rules of this container for address `container`: (chain, rule) pairs.
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

/// The source that matches every address of a family (`masqAll`).
fn any_address(v6: bool) -> &'static str {
    if v6 { "::/0" } else { "0.0.0.0/0" }
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// One argument list as an iptables-restore line tail, quoting what needs it.
fn render(rule: &[String]) -> String {
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
        Backend::Iptables => {
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
                    let _ = teardown(
                        Backend::Iptables,
                        portmap.network,
                        &[portmap.container_id],
                        &done,
                    );
                    return Err(e);
                }
                done.push(v6);
            }
            Ok(())
        }
        Backend::Nftables => {
            let mut script = Vec::new();
            for ip in ips {
                let v6 = ip.addr().is_ipv6();
                let listing = nft::list(nft_family(v6), NFT_TABLE)?;
                script.extend(nft_setup_lines(portmap, *ip, &listing));
            }
            nft::apply(&script_text(&script)).map_err(|e| {
                NetError::Other(format!(
                    "unable to set up nftables rules for port mappings: {e}"
                ))
            })
        }
    }
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
        Backend::Iptables => {
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
                let listing = iptables::list(v6, "nat")?;
                let lines = iptables_teardown_lines(network, container_ids, &listing);
                iptables::restore(v6, "nat", &lines).map_err(|e| {
                    NetError::Other(format!(
                        "could not teardown ipv{} dnat: {e}",
                        if v6 { 6 } else { 4 }
                    ))
                })?;
            }
            Ok(())
        }
        Backend::Nftables => {
            let mut script = Vec::new();
            for v6 in v6s {
                let listing = nft::list(nft_family(*v6), NFT_TABLE)?;
                let table = format!("{} {NFT_TABLE}", nft_family(*v6));
                for id in container_ids {
                    script.extend(nft_deletes(&table, &listing, id));
                }
            }
            nft::apply(&script_text(&script))
                .map_err(|e| NetError::Other(format!("error deleting nftables rules: {e}")))
        }
    }
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
pub fn iptables_gc(network: &str, keep: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
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

/// Verifies that the forwarding of `portmap` to each address in `ips` is in place.
pub fn check(backend: Backend, portmap: &PortMap, ips: &[IpNet]) -> Result<()> {
    for ip in ips {
        let v6 = ip.addr().is_ipv6();
        match backend {
            Backend::Iptables => {
                let listing = iptables::list(v6, "nat")?;
                iptables_check(portmap, *ip, &listing)?;
            }
            Backend::Nftables => {
                let listing = nft::list(nft_family(v6), NFT_TABLE)?;
                nft_check(portmap, *ip, &listing)?;
            }
        }
    }
    Ok(())
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

    fn mappings() -> Vec<Mapping> {
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

    fn portmap(mappings: &[Mapping]) -> PortMap<'_> {
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
    fn comments_are_cut_as_upstream() {
        let long = "x".repeat(300);
        let comment = dnat_comment("n", &long);
        assert_eq!(comment.len(), 256);
        assert!(comment.ends_with("..."));
        assert_eq!(dnat_comment("n", "c"), "dnat name: \"n\" id: \"c\"");
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
