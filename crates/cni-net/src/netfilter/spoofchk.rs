//! bridge's MAC spoof check (upstream `pkg/link` spoofcheck): in the `bridge nat`
//! table, frames entering from the container's host veth must carry the container's
//! MAC, everything else is dropped. All objects carry the comment
//! `macspoofchk-<containerID>-<ifname>`; the table and its `PREROUTING` base chain
//! are shared and stay.

use super::nft;
use crate::Result;

const TABLE: &str = "bridge nat";

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
        let chain = iface_chain(self.container_id, self.ifname);
        let mac_chain = format!("{chain}-mac");
        let comment = comment(self.container_id, self.ifname);
        let stale = nft::list("bridge", "nat")?
            .delete_rules(TABLE, |r| r.chain == "PREROUTING" && r.comment == comment);
        let mut script = vec![
            format!("add table {TABLE}"),
            format!(
                "add chain {TABLE} PREROUTING {{ type filter hook prerouting priority -300 ; policy accept ; }}"
            ),
            format!("add chain {TABLE} {chain}"),
            format!("add chain {TABLE} {mac_chain}"),
            format!("flush chain {TABLE} {chain}"),
            format!("flush chain {TABLE} {mac_chain}"),
        ];
        script.extend(stale);
        script.extend([
            format!(
                "add rule {TABLE} PREROUTING iifname \"{}\" jump {chain} comment \"{comment}\"",
                self.host_iface
            ),
            format!("add rule {TABLE} {chain} jump {mac_chain} comment \"{comment}\""),
            format!(
                "add rule {TABLE} {mac_chain} ether saddr {} return comment \"{comment}\"",
                self.mac
            ),
            format!("add rule {TABLE} {mac_chain} drop comment \"{comment}\""),
        ]);
        nft::apply(&(script.join("\n") + "\n"))
    }
}

/// Removes an attachment's spoof check; nothing there is fine.
pub fn teardown(container_id: &str, ifname: &str) -> Result<()> {
    if !super::nft_usable() {
        return Ok(());
    }
    let chain = iface_chain(container_id, ifname);
    let mac_chain = format!("{chain}-mac");
    let comment = comment(container_id, ifname);
    let listing = nft::list("bridge", "nat")?;
    let mut script =
        listing.delete_rules(TABLE, |r| r.chain == "PREROUTING" && r.comment == comment);
    for name in [&chain, &mac_chain] {
        if listing.chains.contains(name) {
            script.push(format!("flush chain {TABLE} {name}"));
        }
    }
    for name in [&chain, &mac_chain] {
        if listing.chains.contains(name) {
            script.push(format!("delete chain {TABLE} {name}"));
        }
    }
    if script.is_empty() {
        return Ok(());
    }
    nft::apply(&(script.join("\n") + "\n"))
}
