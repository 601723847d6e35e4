//! bridge's MAC spoof check (upstream `pkg/link` spoofcheck): in the `bridge nat`
//! table, frames entering from the container's host veth must carry the container's
//! MAC, everything else is dropped. All objects carry the comment
//! `macspoofchk-<containerID>-<ifname>`; the table and its `PREROUTING` base chain
//! are shared and stay. Written in-process (`crate::nft`), one transaction a call.

use crate::nft::matches;
use crate::nft::{BaseChain, Batch, Family, Hook, Nft, Verdict};
use crate::{NetError, Result};

const TABLE: &str = "nat";
const PREROUTING: &str = "PREROUTING";

/// One attachment's spoof check.
pub struct SpoofCheck<'a> {
    pub host_iface: &'a str,
    pub mac: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
}

fn iface_chain(container_id: &str, ifname: &str) -> String {
    format!("cni-br-iface-{container_id}-{ifname}")
}

fn comment(container_id: &str, ifname: &str) -> String {
    format!("macspoofchk-{container_id}-{ifname}")
}

impl SpoofCheck<'_> {
    /// Creates (or rewrites) the rules, in one transaction.
    pub fn setup(&self) -> Result<()> {
        let mac = crate::parse_mac(self.mac).map_err(NetError::Invalid)?;
        let chain = iface_chain(self.container_id, self.ifname);
        let mac_chain = format!("{chain}-mac");
        let comment = comment(self.container_id, self.ifname);
        let mut engine = Nft::open()?;
        let listing = engine.list(Family::Bridge, TABLE)?;
        let mut batch = Batch::new();
        let br = Family::Bridge;
        batch.add_table(br, TABLE, None)?;
        if !listing.has_chain(PREROUTING) {
            let base = BaseChain {
                kind: "filter",
                hook: Hook::Prerouting,
                priority: -300,
                accept_policy: true,
            };
            batch.add_chain(br, TABLE, PREROUTING, Some(base), None)?;
        }
        for name in [&chain, &mac_chain] {
            if listing.has_chain(name) {
                batch.flush_chain(br, TABLE, name);
            } else {
                batch.add_chain(br, TABLE, name, None, None)?;
            }
        }
        for rule in listing.select(|r| r.chain == PREROUTING && r.comment == comment) {
            batch.delete_rule(br, TABLE, PREROUTING, rule.handle);
        }
        let mut entry = matches::iifname(self.host_iface);
        entry.push(matches::verdict(Verdict::Jump(chain.clone())));
        batch.add_rule(br, TABLE, PREROUTING, &entry, Some(&comment))?;
        let to_mac = [matches::verdict(Verdict::Jump(mac_chain.clone()))];
        batch.add_rule(br, TABLE, &chain, &to_mac, Some(&comment))?;
        let mut allowed = matches::ether_saddr(mac);
        allowed.push(matches::verdict(Verdict::Return));
        batch.add_rule(br, TABLE, &mac_chain, &allowed, Some(&comment))?;
        let drop = [matches::verdict(Verdict::Drop)];
        batch.add_rule(br, TABLE, &mac_chain, &drop, Some(&comment))?;
        engine.commit(&batch)
    }
}

/// Removes an attachment's spoof check; nothing there (or no nf_tables) is fine.
pub fn teardown(container_id: &str, ifname: &str) -> Result<()> {
    let chain = iface_chain(container_id, ifname);
    let mac_chain = format!("{chain}-mac");
    let comment = comment(container_id, ifname);
    let mut engine = match Nft::open() {
        Ok(engine) => engine,
        Err(e) if crate::nft::unavailable(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let listing = match engine.list(Family::Bridge, TABLE) {
        Ok(listing) => listing,
        Err(e) if crate::nft::unavailable(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let br = Family::Bridge;
    let mut batch = Batch::new();
    for rule in listing.select(|r| r.chain == PREROUTING && r.comment == comment) {
        batch.delete_rule(br, TABLE, PREROUTING, rule.handle);
    }
    for name in [&chain, &mac_chain] {
        if listing.has_chain(name) {
            batch.flush_chain(br, TABLE, name);
        }
    }
    for name in [&chain, &mac_chain] {
        if listing.has_chain(name) {
            batch.delete_chain(br, TABLE, name);
        }
    }
    engine.commit(&batch)
}
