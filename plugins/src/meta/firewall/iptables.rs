//! firewall's iptables backend, upstream's exact rules in table `filter`, written
//! with one `iptables-restore` per family after one listing:
//!
//! - `FORWARD`: `-m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD`
//!   (first);
//! - `CNI-FORWARD`: the admin chain's jump first, then per address
//!   `-d IP/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT` and
//!   `-s IP/32 -j ACCEPT`;
//! - with an ingress policy, `FORWARD` first jumps to `CNI-ISOLATION-STAGE-1`, where
//!   traffic from the bridge to elsewhere goes on to `CNI-ISOLATION-STAGE-2`, which
//!   drops it when it leaves by an isolated bridge (and `isolated` also drops
//!   bridge-to-same-bridge traffic).
//!
//! The rules are written as `iptables -S` prints them, so a listing tells which
//! exist.

use std::net::IpAddr;

use cni_net::Result;
use cni_net::netfilter::iptables;

use super::{ADMIN_JUMP_COMMENT, FORWARD_CHAIN, FORWARD_JUMP_COMMENT, Isolation, Setup};

const STAGE_1: &str = "CNI-ISOLATION-STAGE-1";
const STAGE_2: &str = "CNI-ISOLATION-STAGE-2";

/// A rule as `-S` shows it, without `-A <chain> `.
type Spec = String;

fn comment(text: &str) -> String {
    format!("-m comment --comment {}", iptables::quote(text))
}

fn host(ip: IpAddr) -> String {
    format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 })
}

/// The two accept rules of one address.
fn address_rules(ip: IpAddr) -> [Spec; 2] {
    [
        format!(
            "-d {} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            host(ip)
        ),
        format!("-s {} -j ACCEPT", host(ip)),
    ]
}

/// Where a missing rule goes.
enum Place {
    Top,
    End,
}

/// A rule a setup needs: (chain, spec, where it goes when missing).
type Needed = (String, Spec, Place);

fn needed_rules(setup: &Setup, v6: bool) -> (Vec<&'static str>, Vec<String>, Vec<Needed>) {
    let mut chains: Vec<&'static str> = Vec::new();
    let mut custom: Vec<String> = Vec::new();
    let mut rules: Vec<Needed> = Vec::new();
    let ips: Vec<IpAddr> = setup
        .ips
        .iter()
        .copied()
        .filter(|ip| ip.is_ipv6() == v6)
        .collect();
    if !ips.is_empty() {
        chains.push(FORWARD_CHAIN);
        custom.push(setup.admin_chain.clone());
        rules.push((
            "FORWARD".into(),
            format!("{} -j {FORWARD_CHAIN}", comment(FORWARD_JUMP_COMMENT)),
            Place::Top,
        ));
        rules.push((
            FORWARD_CHAIN.into(),
            format!("{} -j {}", comment(ADMIN_JUMP_COMMENT), setup.admin_chain),
            Place::Top,
        ));
        for ip in ips {
            for spec in address_rules(ip) {
                rules.push((FORWARD_CHAIN.into(), spec, Place::End));
            }
        }
    }
    if let Some(isolation) = setup.isolation_in(v6) {
        chains.extend([STAGE_1, STAGE_2]);
        rules.extend(isolation_rules(isolation));
    }
    (chains, custom, rules)
}

/// In the order upstream inserts them (a later insert at the top goes above).
fn isolation_rules(isolation: &Isolation) -> Vec<Needed> {
    let c = comment(&isolation.comment());
    let br = &isolation.bridge;
    let mut rules = vec![
        ("FORWARD".into(), format!("{c} -j {STAGE_1}"), Place::Top),
        (
            STAGE_1.into(),
            format!("-i {br} ! -o {br} {c} -j {STAGE_2}"),
            Place::Top,
        ),
    ];
    if isolation.isolated {
        rules.push((
            STAGE_1.into(),
            format!("-i {br} -o {br} {c} -j DROP"),
            Place::Top,
        ));
    }
    rules.extend([
        (STAGE_1.into(), format!("{c} -j RETURN"), Place::End),
        (STAGE_2.into(), format!("-o {br} {c} -j DROP"), Place::Top),
        (STAGE_2.into(), format!("{c} -j RETURN"), Place::End),
    ]);
    rules
}

fn listed(listing: &[String], chain: &str, spec: &str) -> bool {
    let line = format!("-A {chain} {spec}");
    listing.contains(&line)
}

/// Writes what is missing of `setup` in family `v6`, in one restore.
pub(super) fn setup(setup: &Setup, v6: bool) -> Result<()> {
    let listing = iptables::list(v6, "filter")?;
    let (chains, custom, rules) = needed_rules(setup, v6);
    let mut lines = Vec::new();
    for chain in chains
        .iter()
        .map(|c| c.to_string())
        .chain(custom.iter().cloned())
    {
        if !iptables::has_chain(&listing, &chain) && !lines.contains(&format!(":{chain} - [0:0]")) {
            lines.push(format!(":{chain} - [0:0]"));
        }
    }
    for (chain, spec, place) in rules {
        if listed(&listing, &chain, &spec) {
            continue;
        }
        lines.push(match place {
            Place::Top => format!("-I {chain} 1 {spec}"),
            Place::End => format!("-A {chain} {spec}"),
        });
    }
    iptables::restore(v6, "filter", &lines)
}

/// Deletes the accept rules of `ips` (of family `v6`) that exist; chains, jumps and
/// isolation rules stay (other containers use them), as upstream.
pub(super) fn teardown(ips: &[IpAddr], v6: bool) -> Result<()> {
    let listing = iptables::list(v6, "filter")?;
    let lines: Vec<String> = ips
        .iter()
        .filter(|ip| ip.is_ipv6() == v6)
        .flat_map(|ip| address_rules(*ip))
        .filter(|spec| listed(&listing, FORWARD_CHAIN, spec))
        .map(|spec| format!("-D {FORWARD_CHAIN} {spec}"))
        .collect();
    iptables::restore(v6, "filter", &lines)
}

/// Every chain and rule of `setup` in family `v6` must exist.
pub(super) fn check(setup: &Setup, v6: bool) -> std::result::Result<(), String> {
    let listing = iptables::list(v6, "filter").map_err(|e| e.to_string())?;
    let (chains, custom, rules) = needed_rules(setup, v6);
    for chain in chains.iter().map(|c| c.to_string()).chain(custom) {
        if !iptables::has_chain(&listing, &chain) {
            return Err(format!("chain {chain} not found"));
        }
    }
    match rules
        .iter()
        .find(|(chain, spec, _)| !listed(&listing, chain, spec))
    {
        Some((chain, spec, _)) => Err(format!("expected rule {spec:?} in {chain} not found")),
        None => Ok(()),
    }
}
