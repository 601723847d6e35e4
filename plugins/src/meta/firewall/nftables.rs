//! firewall's nftables backend (ours; upstream has none and runs through
//! iptables-nft), in-process, one transaction per call. Table `inet cni_firewall`:
//!
//! - base chain `forward` (filter, forward, priority 0, policy accept): a jump to
//!   the admin chain (`iptablesAdminChainName`, for the administrator's own
//!   rules), then per address `ip daddr IP ct state established,related accept`
//!   and `ip saddr IP accept`, commented with the container ID;
//! - with an ingress policy, base chain `isolation` (priority -1, so before
//!   `forward`): `iifname BR oifname != BR jump isolation-stage-2` (and, for
//!   `isolated`, `iifname BR oifname BR drop`); `isolation-stage-2` drops what
//!   leaves by an isolated bridge.
//!
//! An accept here does not override a drop in another table (nftables evaluates
//! every base chain of the hook): on hosts whose iptables `FORWARD` policy is DROP,
//! the iptables backend is the one that opens the way.

use std::net::IpAddr;

use cni_net::nft::matches::{self, Field};
use cni_net::nft::{BaseChain, Batch, Expr, Family, Hook, Listing, Nft, Verdict};
use cni_net::{NetError, Result};
use cni_types::net::IpNet;

use super::{ADMIN_JUMP_COMMENT, Isolation, Setup};

const TABLE: &str = "cni_firewall";
const TABLE_COMMENT: &str = "CNI firewall plugin rules";
const FORWARD: &str = "forward";
const ISOLATION: &str = "isolation";
const STAGE_2: &str = "isolation-stage-2";
const F: Family = Family::Inet;

fn base(priority: i32) -> BaseChain {
    BaseChain {
        kind: "filter",
        hook: Hook::Forward,
        priority,
        accept_policy: true,
    }
}

/// The two accept rules of one address.
fn address_rules(ip: IpAddr) -> [Vec<Expr>; 2] {
    let host = IpNet::from(ip);
    let v6 = ip.is_ipv6();
    let mut inbound = matches::nfproto(v6);
    inbound.extend(matches::address(Field::Daddr, host, true));
    inbound.extend(matches::ct_established_or_related());
    inbound.push(matches::verdict(Verdict::Accept));
    let mut outbound = matches::nfproto(v6);
    outbound.extend(matches::address(Field::Saddr, host, true));
    outbound.push(matches::verdict(Verdict::Accept));
    [inbound, outbound]
}

fn admin_jump(admin: &str) -> Vec<Expr> {
    vec![matches::verdict(Verdict::Jump(admin.into()))]
}

/// (chain, rule) pairs of an ingress policy.
fn isolation_rules(isolation: &Isolation) -> Vec<(&'static str, Vec<Expr>)> {
    let br = &isolation.bridge;
    let mut out_of_bridge = matches::interface(false, br, true);
    out_of_bridge.extend(matches::interface(true, br, false));
    out_of_bridge.push(matches::verdict(Verdict::Jump(STAGE_2.into())));
    let mut rules = vec![(ISOLATION, out_of_bridge)];
    if isolation.isolated {
        let mut within = matches::interface(false, br, true);
        within.extend(matches::interface(true, br, true));
        within.push(matches::verdict(Verdict::Drop));
        rules.push((ISOLATION, within));
    }
    let mut into_bridge = matches::interface(true, br, true);
    into_bridge.push(matches::verdict(Verdict::Drop));
    rules.push((STAGE_2, into_bridge));
    rules
}

fn holds(listing: &Listing, chain: &str, rule: &[Expr]) -> bool {
    listing
        .rules
        .iter()
        .any(|r| r.chain == chain && r.exprs == rule)
}

fn list(engine: &mut Nft) -> Result<Listing> {
    engine.list(F, TABLE)
}

/// Adds what is missing of `setup`, in one transaction (none when all is there).
pub(super) fn setup(setup: &Setup, container_id: &str) -> Result<()> {
    let mut engine = Nft::open()?;
    let listing = list(&mut engine)?;
    let mut batch = Batch::new();
    batch.add_table(F, TABLE, Some(TABLE_COMMENT))?;
    let mut changed = false;
    if !setup.ips.is_empty() {
        if !listing.has_chain(&setup.admin_chain) {
            batch.add_chain(F, TABLE, &setup.admin_chain, None, None)?;
            changed = true;
        }
        if !listing.has_chain(FORWARD) {
            batch.add_chain(F, TABLE, FORWARD, Some(base(0)), None)?;
            changed = true;
        }
        let jump = admin_jump(&setup.admin_chain);
        if !holds(&listing, FORWARD, &jump) {
            batch.add_rule(F, TABLE, FORWARD, &jump, Some(ADMIN_JUMP_COMMENT))?;
            changed = true;
        }
        for ip in &setup.ips {
            for rule in address_rules(*ip) {
                if !holds(&listing, FORWARD, &rule) {
                    batch.add_rule(F, TABLE, FORWARD, &rule, Some(container_id))?;
                    changed = true;
                }
            }
        }
    }
    if let Some(isolation) = &setup.isolation {
        if !listing.has_chain(STAGE_2) {
            batch.add_chain(F, TABLE, STAGE_2, None, None)?;
            changed = true;
        }
        if !listing.has_chain(ISOLATION) {
            batch.add_chain(F, TABLE, ISOLATION, Some(base(-1)), None)?;
            changed = true;
        }
        let comment = isolation.comment();
        for (chain, rule) in isolation_rules(isolation) {
            if !holds(&listing, chain, &rule) {
                batch.add_rule(F, TABLE, chain, &rule, Some(&comment))?;
                changed = true;
            }
        }
    }
    if changed {
        engine.commit(&batch)?;
    }
    Ok(())
}

/// Deletes the accept rules of `ips`, in one transaction (none when there are none).
pub(super) fn teardown(ips: &[IpAddr]) -> Result<()> {
    let mut engine = match Nft::open() {
        Ok(engine) => engine,
        Err(e) if cni_net::nft::unavailable(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let listing = list(&mut engine)?;
    let mut batch = Batch::new();
    for ip in ips {
        for rule in address_rules(*ip) {
            for found in listing.select(|r| r.chain == FORWARD && r.exprs == rule) {
                batch.delete_rule(F, TABLE, FORWARD, found.handle);
            }
        }
    }
    if !batch.is_empty() {
        engine.commit(&batch)?;
    }
    Ok(())
}

/// Every chain and rule of `setup` must exist.
pub(super) fn check(setup: &Setup) -> std::result::Result<(), String> {
    let failed = |e: NetError| e.to_string();
    let mut engine = Nft::open().map_err(failed)?;
    let listing = list(&mut engine).map_err(failed)?;
    let mut wanted: Vec<(&str, Vec<Expr>)> = Vec::new();
    if !setup.ips.is_empty() {
        wanted.push((FORWARD, admin_jump(&setup.admin_chain)));
        for ip in &setup.ips {
            wanted.extend(address_rules(*ip).map(|r| (FORWARD, r)));
        }
    }
    if let Some(isolation) = &setup.isolation {
        wanted.extend(isolation_rules(isolation));
    }
    match wanted
        .iter()
        .find(|(chain, rule)| !holds(&listing, chain, rule))
    {
        Some((chain, _)) => Err(format!(
            "expected rule not found in chain {chain} of table inet {TABLE}"
        )),
        None => Ok(()),
    }
}
