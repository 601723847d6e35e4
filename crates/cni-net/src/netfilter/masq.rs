//! IP masquerade for bridge and ptp (upstream `pkg/ip` ipmasq), in both backends.
//!
//! iptables (table `nat`): a chain `CNI-<hash(network+containerID)>` holding
//! `-d <subnet> ACCEPT` per address and `! -d <multicast> MASQUERADE`, entered from
//! `POSTROUTING` by `-s <ip> -j <chain>`; every rule carries the comment
//! `name: "<net>" id: "<cid>"`.
//!
//! nftables: table `inet cni_plugins_masquerade`, base chain `postrouting` skipping
//! multicast and jumping to `masq_checks`, which holds one rule per address with a
//! comment that starts with the attachment's instance prefix.
//!
//! Teardown finds everything by name (the chain) or comment prefix, so unlike upstream
//! it needs no addresses: a DEL after the container's link or netns is gone still
//! removes the rules. When the addresses are known, the common iptables DEL removes
//! exactly what ADD wrote without reading the table first.

use ipnet::IpNet;

use super::{Backend, chain_name, iptables, iptables_usable, sha512_hex};
use crate::nft::matches::{self, Field};
use crate::nft::{BaseChain, Batch, Expr, Family, Hook, Nft, Rule, Verdict};
use crate::{NetError, Result};

/// The attachment that owns a set of masquerade rules.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub network: &'a str,
    pub ifname: &'a str,
    pub container_id: &'a str,
}

pub const NFT_TABLE: &str = "cni_plugins_masquerade";
const NFT_TABLE_COMMENT: &str =
    "Masquerading for plugins from github.com/containernetworking/plugins";

impl Owner<'_> {
    /// `CNI-` + hash of network and container ID (the ifname is not part of it).
    pub fn chain(&self) -> String {
        chain_name("CNI-", self.network, self.container_id)
    }

    pub fn iptables_comment(&self) -> String {
        format!("name: \"{}\" id: \"{}\"", self.network, self.container_id)
    }

    /// `<h16(network)>-<h16(ifname:containerID)>`: the nft comment prefix of this
    /// attachment's rules.
    pub fn nft_instance(&self) -> String {
        let h16 = |s: &str| sha512_hex(s)[..16].to_string();
        format!(
            "{}-{}",
            h16(self.network),
            h16(&format!("{}:{}", self.ifname, self.container_id))
        )
    }

    fn nft_comment(&self) -> String {
        let mut comment = format!(
            "{}, net: {}, if: {}, id: {}",
            self.nft_instance(),
            self.network,
            self.ifname,
            self.container_id
        )
        .replace('"', "");
        comment.truncate(128);
        comment
    }
}

/// The addresses of one family (`v6`).
fn of_family(ips: &[IpNet], v6: bool) -> Vec<IpNet> {
    ips.iter()
        .filter(|ip| ip.addr().is_ipv6() == v6)
        .copied()
        .collect()
}

fn multicast(v6: bool) -> &'static str {
    if v6 { "ff00::/8" } else { "224.0.0.0/4" }
}

/// Masquerades traffic from `ips` to anywhere outside their subnets.
pub fn setup(backend: Backend, ips: &[IpNet], owner: &Owner) -> Result<()> {
    Pending::start(backend).finish(ips, owner)
}

/// A masquerade setup in two steps: [`Pending::start`] at the beginning of an ADD
/// starts the IPv4 `iptables-restore` (most attachments have an IPv4 address), which
/// loads while the plugin makes the interfaces; [`Pending::finish`] writes the rules,
/// starting any other family's restore then. Dropped unfinished (the ADD failed, or
/// there was no IPv4 address), a started restore changes nothing.
pub struct Pending {
    backend: Backend,
    v4: Option<iptables::Restore>,
}

impl Pending {
    pub fn start(backend: Backend) -> Pending {
        let v4 = match backend {
            Backend::Iptables => iptables::start_restore(false).ok(),
            Backend::Nftables => None,
        };
        Pending { backend, v4 }
    }

    pub fn finish(mut self, ips: &[IpNet], owner: &Owner) -> Result<()> {
        match self.backend {
            Backend::Iptables => {
                for v6 in [false, true] {
                    let family = of_family(ips, v6);
                    if !family.is_empty() {
                        let started = if v6 { None } else { self.v4.take() };
                        iptables_setup(v6, &family, owner, started)?;
                    }
                }
                Ok(())
            }
            Backend::Nftables => nft_setup(ips, owner),
        }
    }
}

/// Removes the attachment's masquerade rules from both backends: those of
/// `ips` (its addresses; empty means it owns none), or, with `None`, everything of
/// the container ID (its addresses are unknown and the container is gone). The
/// backends and families are torn down side by side: each is its own processes and
/// nf_tables commit, so the teardown takes as long as the slowest, not their sum.
pub fn teardown(ips: Option<&[IpNet]>, owner: &Owner) -> Result<()> {
    let errors: Vec<NetError> = std::thread::scope(|scope| {
        let mut jobs = Vec::new();
        for v6 in [false, true] {
            let family = ips.map(|ips| of_family(ips, v6));
            let involved = family.as_ref().is_none_or(|f| !f.is_empty());
            if involved && iptables_usable(v6) {
                jobs.push(scope.spawn(move || iptables_teardown(v6, family.as_deref(), owner)));
            }
        }
        jobs.push(scope.spawn(|| nft_teardown(owner)));
        jobs.into_iter()
            .filter_map(|job| match job.join() {
                Ok(result) => result.err(),
                Err(_) => Some(NetError::Other("masquerade teardown panicked".into())),
            })
            .collect()
    });
    NetError::collect(errors)
}

/// GC: removes the masquerade of every attachment of `network` that `keep` (given
/// the container ID and, where the rules name it, the ifname) rejects, in both
/// backends. iptables rules name only the container (`name: "<net>" id: "<cid>"`),
/// so there an attachment is kept while any of its container's is.
pub fn gc(network: &str, keep: &(dyn Fn(&str, Option<&str>) -> bool + Sync)) -> Result<()> {
    let mut errors = Vec::new();
    for v6 in [false, true] {
        if !iptables_usable(v6) {
            continue;
        }
        let result = iptables::list(v6, "nat").and_then(|listing| {
            let prefix = "-A POSTROUTING -s ";
            let marker = format!("--comment \"name: \\\"{network}\\\" id: \\\"");
            let mut stale: Vec<String> = listing
                .iter()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| {
                    let rest = &l[l.find(&marker)? + marker.len()..];
                    Some(rest[..rest.find("\\\"")?].to_string())
                })
                .filter(|id| !keep(id, None))
                .collect();
            stale.sort();
            stale.dedup();
            let mut lines = Vec::new();
            for id in &stale {
                let owner = Owner {
                    network,
                    ifname: "",
                    container_id: id,
                };
                let chain = owner.chain();
                lines.extend(iptables::jumps_to(&listing, "POSTROUTING", &chain));
                if iptables::has_chain(&listing, &chain) {
                    lines.push(format!("-F {chain}"));
                    lines.push(format!("-X {chain}"));
                }
            }
            iptables::restore(v6, "nat", &lines)
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    let network_hash = &sha512_hex(network)[..16];
    let result = nft_delete(|r| {
        r.comment.starts_with(network_hash)
            && nft_attachment(&r.comment).is_some_and(|(ifname, id)| !keep(id, Some(ifname)))
    });
    if let Err(e) = result {
        errors.push(e);
    }
    NetError::collect(errors)
}

/// (ifname, container ID) from an nft masquerade comment
/// (`<hash>-<hash>, net: N, if: I, id: C`).
fn nft_attachment(comment: &str) -> Option<(&str, &str)> {
    let ifname = comment.split(", if: ").nth(1)?.split(", id: ").next()?;
    let id = comment.split(", id: ").nth(1)?;
    Some((ifname, id))
}

fn iptables_setup(
    v6: bool,
    ips: &[IpNet],
    owner: &Owner,
    started: Option<iptables::Restore>,
) -> Result<()> {
    // A new container's chain cannot exist yet, and neither can a jump to it: `-N`
    // (which fails on an existing chain) makes that an atomic check, so the common
    // ADD is one process. A repeated ADD falls back to reading the table.
    let fresh = iptables_setup_lines(ips, owner, None);
    let applied = match started {
        Some(restore) => restore.finish("nat", &fresh),
        None => iptables::restore(v6, "nat", &fresh),
    };
    if applied.is_ok() {
        return Ok(());
    }
    let listing = iptables::list(v6, "nat")?;
    iptables::restore(v6, "nat", &iptables_setup_lines(ips, owner, Some(&listing)))
}

/// The restore lines for the masquerade of `ips`: for a chain that must not exist
/// yet (`listing` `None`), or given the table's `-S` listing, adding only what is
/// missing. The chain is shared by every attachment of the container on the network
/// (its name has no ifname), so an existing one is never flushed: another
/// attachment's rules stay, a repeated ADD converges, and a new subnet's ACCEPT goes
/// first, ahead of the MASQUERADE.
fn iptables_setup_lines(ips: &[IpNet], owner: &Owner, listing: Option<&[String]>) -> Vec<String> {
    let v6 = ips.first().is_some_and(|ip| ip.addr().is_ipv6());
    let chain = owner.chain();
    let comment = iptables::quote(&owner.iptables_comment());
    let exists = listing.is_some_and(|l| iptables::has_chain(l, &chain));
    let present = |rule: &str| listing.is_some_and(|l| l.iter().any(|x| x == rule));
    let mut lines = Vec::new();
    if !exists {
        lines.push(match listing {
            None => format!("-N {chain}"),
            Some(_) => format!(":{chain} - [0:0]"),
        });
    }
    let mut subnets: Vec<IpNet> = Vec::new();
    for ip in ips {
        if !subnets.contains(&ip.trunc()) {
            subnets.push(ip.trunc());
        }
    }
    let masquerade = format!(
        "-A {chain} ! -d {} -m comment --comment {comment} -j MASQUERADE",
        multicast(v6)
    );
    if exists {
        for subnet in &subnets {
            let rule = format!("-A {chain} -d {subnet} -m comment --comment {comment} -j ACCEPT");
            if !present(&rule) {
                lines.push(rule.replacen("-A ", "-I ", 1).replacen(" -d ", " 1 -d ", 1));
            }
        }
        if !present(&masquerade) {
            lines.push(masquerade);
        }
    } else {
        for subnet in &subnets {
            lines.push(format!(
                "-A {chain} -d {subnet} -m comment --comment {comment} -j ACCEPT"
            ));
        }
        lines.push(masquerade);
    }
    for ip in ips {
        let rule = format!("-A {}", jump(ip, owner));
        if !present(&rule) {
            lines.push(rule);
        }
    }
    lines
}

/// The `POSTROUTING` rule that sends `ip`'s traffic to the owner's chain, without its
/// `-A`/`-D`.
fn jump(ip: &IpNet, owner: &Owner) -> String {
    format!(
        "POSTROUTING -s {} -m comment --comment {} -j {}",
        IpNet::from(ip.addr()),
        iptables::quote(&owner.iptables_comment()),
        owner.chain()
    )
}

fn iptables_teardown(v6: bool, ips: Option<&[IpNet]>, owner: &Owner) -> Result<()> {
    // The common DEL: the only attachment of its container goes. Its jumps and the
    // chain, exactly as ADD wrote them, in one restore without reading the table.
    // `-D` of a rule that is not there fails the restore atomically, and so does `-X`
    // of a chain something still jumps to (another attachment of the container, or
    // an older rule format): then the table is read.
    if let Some(ips) = ips
        && iptables::restore(v6, "nat", &iptables_teardown_lines(ips, owner)).is_ok()
    {
        return Ok(());
    }
    let listing = iptables::list(v6, "nat")?;
    iptables::restore(v6, "nat", &iptables_precise_teardown(&listing, ips, owner))
}

/// The lines that remove, given the table's listing, the jumps of `ips` to the
/// owner's chain (every jump with `None`), then the chain when no jump to it is
/// left, or else the `-d <subnet> ACCEPT` rules that only `ips` needed.
fn iptables_precise_teardown(
    listing: &[String],
    ips: Option<&[IpNet]>,
    owner: &Owner,
) -> Vec<String> {
    let chain = owner.chain();
    let jumps = iptables::jumps_to(listing, "POSTROUTING", &chain);
    // A jump's source, as iptables prints it: `-s 10.22.0.5/32` (the address), or
    // from older upstreams `-s 10.22.0.0/16` (its subnet), which is this
    // attachment's when it holds one of its addresses.
    let source = |line: &str| -> Option<IpNet> {
        let mut tokens = line.split_whitespace();
        tokens.find(|t| *t == "-s")?;
        tokens.next()?.parse().ok()
    };
    let ours = |line: &String| match ips {
        None => true,
        Some(ips) => source(line).is_some_and(|s| ips.iter().any(|ip| s.contains(&ip.addr()))),
    };
    let (mine, others): (Vec<String>, Vec<String>) = jumps.into_iter().partition(ours);
    let mut lines = mine;
    if !iptables::has_chain(listing, &chain) {
        return lines;
    }
    if others.is_empty() {
        lines.push(format!("-F {chain}"));
        lines.push(format!("-X {chain}"));
        return lines;
    }
    // Another attachment still uses the chain: only the subnets no remaining source
    // lies in lose their ACCEPT rule.
    let remaining: Vec<std::net::IpAddr> = others
        .iter()
        .filter_map(|l| source(l))
        .map(|s| s.addr())
        .collect();
    let head = format!("-A {chain} -d ");
    for rule in listing
        .iter()
        .filter(|l| l.starts_with(&head) && l.ends_with("-j ACCEPT"))
    {
        let subnet = rule[head.len()..]
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<IpNet>().ok());
        let ours = subnet.is_some_and(|net| {
            ips.is_some_and(|ips| ips.iter().any(|ip| net.contains(&ip.addr())))
                && !remaining.iter().any(|r| net.contains(r))
        });
        if ours {
            lines.push(format!("-D {}", &rule[3..]));
        }
    }
    lines
}

/// The restore lines that remove what [`iptables_setup_lines`] wrote for `ips`.
fn iptables_teardown_lines(ips: &[IpNet], owner: &Owner) -> Vec<String> {
    let chain = owner.chain();
    let mut lines: Vec<String> = ips
        .iter()
        .map(|ip| format!("-D {}", jump(ip, owner)))
        .collect();
    lines.push(format!("-F {chain}"));
    lines.push(format!("-X {chain}"));
    lines
}

fn nft_setup(ips: &[IpNet], owner: &Owner) -> Result<()> {
    let mut engine = Nft::open()?;
    let listing = engine.list(Family::Inet, NFT_TABLE)?;
    let mut batch = Batch::new();
    batch.add_table(Family::Inet, NFT_TABLE, Some(NFT_TABLE_COMMENT))?;
    // Upstream declares the chains and rewrites the base chain on every ADD. Touching
    // an existing chain makes the kernel update it, a 10–20 ms commit against
    // microseconds for new rules: only what is missing or different is written.
    if !listing.has_chain(MASQ_CHECKS) {
        batch.add_chain(
            Family::Inet,
            NFT_TABLE,
            MASQ_CHECKS,
            None,
            Some(MASQ_CHECKS_COMMENT),
        )?;
    }
    let skeleton = nft_skeleton();
    if !listing.chain_holds(POSTROUTING, &skeleton) {
        if listing.has_chain(POSTROUTING) {
            batch.flush_chain(Family::Inet, NFT_TABLE, POSTROUTING);
        } else {
            let base = BaseChain {
                kind: "nat",
                hook: Hook::Postrouting,
                priority: 100,
                accept_policy: false,
            };
            batch.add_chain(Family::Inet, NFT_TABLE, POSTROUTING, Some(base), None)?;
        }
        for rule in &skeleton {
            batch.add_rule(Family::Inet, NFT_TABLE, POSTROUTING, rule, None)?;
        }
    }
    // This attachment's earlier rules (a repeated ADD) go in the same transaction.
    let instance = owner.nft_instance();
    for rule in listing.select(|r| r.chain == MASQ_CHECKS && r.comment.starts_with(&instance)) {
        batch.delete_rule(Family::Inet, NFT_TABLE, MASQ_CHECKS, rule.handle);
    }
    let comment = owner.nft_comment();
    for ip in ips {
        batch.add_rule(
            Family::Inet,
            NFT_TABLE,
            MASQ_CHECKS,
            &nft_rule(ip),
            Some(&comment),
        )?;
    }
    engine.commit(&batch)
}

const POSTROUTING: &str = "postrouting";
const MASQ_CHECKS: &str = "masq_checks";
const MASQ_CHECKS_COMMENT: &str =
    "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet";

/// `postrouting`'s rules as upstream writes them: skip multicast, then `goto
/// masq_checks`.
fn nft_skeleton() -> Vec<Vec<Expr>> {
    let skip = |v6: bool| {
        let mut rule = matches::nfproto(v6);
        let multicast: IpNet = multicast(v6)
            .parse()
            .unwrap_or(IpNet::V4(Default::default()));
        rule.extend(matches::address(Field::Daddr, multicast, true));
        rule.push(matches::verdict(Verdict::Return));
        rule
    };
    vec![
        skip(false),
        skip(true),
        vec![matches::verdict(Verdict::Goto(MASQ_CHECKS.into()))],
    ]
}

/// `ip saddr == IP ip daddr != SUBNET masquerade` (`ip6` for IPv6).
fn nft_rule(ip: &IpNet) -> Vec<Expr> {
    let mut rule = matches::nfproto(ip.addr().is_ipv6());
    rule.extend(matches::address(Field::Saddr, IpNet::from(ip.addr()), true));
    rule.extend(matches::address(Field::Daddr, ip.trunc(), false));
    rule.push(Expr::Masq);
    rule
}

fn nft_teardown(owner: &Owner) -> Result<()> {
    let instance = owner.nft_instance();
    nft_delete(|r| r.comment.starts_with(&instance))
}

/// Deletes the `masq_checks` rules `matches` picks, in one commit. A kernel without
/// nf_tables has none: nothing to do, not an error (DEL cleans both backends).
fn nft_delete(matches: impl Fn(&Rule) -> bool) -> Result<()> {
    let mut engine = match Nft::open() {
        Ok(engine) => engine,
        Err(e) if crate::nft::unavailable(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let listing = match engine.list(Family::Inet, NFT_TABLE) {
        Ok(listing) => listing,
        Err(e) if crate::nft::unavailable(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut batch = Batch::new();
    for rule in listing.select(|r| r.chain == MASQ_CHECKS && matches(r)) {
        batch.delete_rule(Family::Inet, NFT_TABLE, MASQ_CHECKS, rule.handle);
    }
    engine.commit(&batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner<'static> {
        Owner {
            network: "mynet",
            ifname: "eth0",
            container_id: "ctr-1",
        }
    }

    #[test]
    fn a_new_chain_is_created_with_n_and_a_repeated_add_rewrites_it() {
        let owner = owner();
        let chain = owner.chain();
        let ips: Vec<IpNet> = vec!["10.22.0.5/16".parse().unwrap()];
        let comment = r#""name: \"mynet\" id: \"ctr-1\"""#;
        let jump =
            format!("-A POSTROUTING -s 10.22.0.5/32 -m comment --comment {comment} -j {chain}");
        let fresh = iptables_setup_lines(&ips, &owner, None);
        assert_eq!(
            fresh,
            vec![
                format!("-N {chain}"),
                format!("-A {chain} -d 10.22.0.0/16 -m comment --comment {comment} -j ACCEPT"),
                format!("-A {chain} ! -d 224.0.0.0/4 -m comment --comment {comment} -j MASQUERADE"),
                jump.clone(),
            ]
        );
        // A repeated ADD adds what is missing, never flushes the shared chain.
        let accept = format!("-A {chain} -d 10.22.0.0/16 -m comment --comment {comment} -j ACCEPT");
        let listing = vec![format!("-N {chain}"), accept.clone(), jump.clone()];
        let again = iptables_setup_lines(&ips, &owner, Some(&listing));
        assert_eq!(
            again,
            vec![format!(
                "-A {chain} ! -d 224.0.0.0/4 -m comment --comment {comment} -j MASQUERADE"
            )]
        );
        // A second attachment's subnet goes ahead of the MASQUERADE.
        let other: Vec<IpNet> = vec!["10.30.0.7/24".parse().unwrap()];
        let second = iptables_setup_lines(&other, &owner, Some(&listing));
        assert_eq!(
            second[0],
            format!("-I {chain} 1 -d 10.30.0.0/24 -m comment --comment {comment} -j ACCEPT")
        );
    }

    #[test]
    fn a_del_removes_only_its_own_attachments_jumps() {
        let owner = owner();
        let chain = owner.chain();
        let comment = r#""name: \"mynet\" id: \"ctr-1\"""#;
        let listing: Vec<String> = vec![
            format!("-N {chain}"),
            format!("-A POSTROUTING -s 10.22.0.5/32 -m comment --comment {comment} -j {chain}"),
            format!("-A POSTROUTING -s 10.30.0.7/32 -m comment --comment {comment} -j {chain}"),
            format!("-A {chain} -d 10.30.0.0/24 -m comment --comment {comment} -j ACCEPT"),
            format!("-A {chain} -d 10.22.0.0/16 -m comment --comment {comment} -j ACCEPT"),
            format!("-A {chain} ! -d 224.0.0.0/4 -m comment --comment {comment} -j MASQUERADE"),
        ];
        let eth1: Vec<IpNet> = vec!["10.30.0.7/24".parse().unwrap()];
        assert_eq!(
            iptables_precise_teardown(&listing, Some(&eth1), &owner),
            vec![
                format!("-D POSTROUTING -s 10.30.0.7/32 -m comment --comment {comment} -j {chain}"),
                format!("-D {chain} -d 10.30.0.0/24 -m comment --comment {comment} -j ACCEPT"),
            ]
        );
        // A DEL of an attachment that owns nothing removes nothing.
        assert!(iptables_precise_teardown(&listing, Some(&[]), &owner).is_empty());
        // The container gone and its addresses unknown: everything of it.
        let all = iptables_precise_teardown(&listing, None, &owner);
        assert_eq!(all.len(), 4, "{all:#?}");
        assert_eq!(all[2..], [format!("-F {chain}"), format!("-X {chain}")]);
    }

    #[test]
    fn nft_comments_name_their_attachment() {
        let comment = owner().nft_comment();
        assert_eq!(nft_attachment(&comment), Some(("eth0", "ctr-1")));
        assert_eq!(nft_attachment("something else"), None);
    }

    #[test]
    fn the_fast_teardown_deletes_each_jump_add_wrote_then_the_chain() {
        let owner = owner();
        let chain = owner.chain();
        let ips: Vec<IpNet> = vec![
            "10.22.0.5/16".parse().unwrap(),
            "10.23.0.5/16".parse().unwrap(),
        ];
        let added = iptables_setup_lines(&ips, &owner, None);
        let removed = iptables_teardown_lines(&ips, &owner);
        let jumps: Vec<String> = added
            .iter()
            .filter(|l| l.starts_with("-A POSTROUTING "))
            .map(|l| l.replacen("-A ", "-D ", 1))
            .collect();
        assert_eq!(jumps.len(), 2);
        assert_eq!(removed[..2], jumps[..]);
        assert_eq!(removed[2..], [format!("-F {chain}"), format!("-X {chain}")]);
    }
}
