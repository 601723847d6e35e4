//! nf_tables in-process, over NETLINK_NETFILTER: no `nft` binary. A [`Batch`] of
//! table, chain and rule changes is committed in one `sendmsg` (begin … end), which
//! the kernel applies as one transaction or refuses whole; [`Nft::list`] dumps one
//! table's chains and rules (handle, comment, expressions).
//!
//! Objects are the ones `nft` writes for the same text, comments in userdata
//! included, so `nft list ruleset`, `nft -j` and upstream's knftables-based DEL see
//! them as if `nft -f` had made them, and the other way round.
//!
//! Cost (`reference/nftables.md` §3): closing this socket after a commit that
//! deleted rules or re-added existing chains waits for an RCU grace period (5–30 ms);
//! a commit of new objects only does not. So ADD lists first and creates only what is
//! missing, and DEL commits once.

pub mod expr;
pub mod matches;
mod wire;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

pub use expr::{Expr, NatKind, Verdict};
use wire::{Attrs, be_u64, comment_of, comment_userdata, find, string};

use crate::{NetError, Result};

/// The nf_tables families our tables live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet,
    Ip,
    Ip6,
    Bridge,
}

impl Family {
    fn wire(self) -> u8 {
        match self {
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Bridge => 7,
            Family::Ip6 => 10,
        }
    }

    /// The name `nft` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Bridge => "bridge",
        }
    }
}

/// Netfilter hooks (the bridge family's prerouting is number 0 too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }
}

/// What makes a chain a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    /// `filter` or `nat`.
    pub kind: &'static str,
    pub hook: Hook,
    pub priority: i32,
    /// `policy accept` written explicitly, as `nft` does when the text says it.
    pub accept_policy: bool,
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_GETGEN: u16 = 16;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// Attribute numbers (`linux/netfilter/nf_tables.h`).
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_CHAIN_USERDATA: u16 = 12;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;

/// `nft` refuses comments longer than this.
pub const MAX_COMMENT: usize = 128;

/// Changes to commit together.
#[derive(Default)]
pub struct Batch {
    messages: Vec<(u16, u16, u8, Attrs)>,
    /// Each change as `nft` would say it (without the rule's statements).
    described: Vec<String>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Whether the batch deletes something (its commit then costs a grace period).
    pub fn deletes(&self) -> bool {
        self.messages
            .iter()
            .any(|(kind, ..)| matches!(*kind, NFT_MSG_DELRULE | NFT_MSG_DELCHAIN))
    }

    fn push(&mut self, kind: u16, flags: u16, family: Family, attrs: Attrs, text: String) {
        self.messages.push((kind, flags, family.wire(), attrs));
        self.described.push(text);
    }

    /// The changes, in order, as `nft` would say them (`add rule ip t c`, `delete
    /// rule ip t c handle 7`, ...; rules without their statements).
    pub fn describe(&self) -> &[String] {
        &self.described
    }

    /// `add table` (an existing one is left as it is).
    pub fn add_table(&mut self, family: Family, name: &str, comment: Option<&str>) -> Result<()> {
        let mut a = Attrs::new();
        a.str(NFTA_TABLE_NAME, name);
        if let Some(comment) = comment {
            a.bytes(
                NFTA_TABLE_USERDATA,
                &comment_userdata(check_comment(comment)?),
            );
        }
        self.push(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            family,
            a,
            format!("add table {} {name}", family.name()),
        );
        Ok(())
    }

    /// `add chain` (an existing one is updated: list first, and add only what is
    /// missing).
    pub fn add_chain(
        &mut self,
        family: Family,
        table: &str,
        name: &str,
        base: Option<BaseChain>,
        comment: Option<&str>,
    ) -> Result<()> {
        let mut a = Attrs::new();
        a.str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, name);
        if let Some(base) = base {
            let mut hook = Attrs::new();
            hook.u32(NFTA_HOOK_HOOKNUM, base.hook.number())
                .u32(NFTA_HOOK_PRIORITY, base.priority as u32);
            a.nested(NFTA_CHAIN_HOOK, &hook);
            if base.accept_policy {
                a.u32(NFTA_CHAIN_POLICY, 1);
            }
            a.str(NFTA_CHAIN_TYPE, base.kind);
        }
        if let Some(comment) = comment {
            a.bytes(
                NFTA_CHAIN_USERDATA,
                &comment_userdata(check_comment(comment)?),
            );
        }
        self.push(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            family,
            a,
            format!("add chain {} {table} {name}", family.name()),
        );
        Ok(())
    }

    /// `flush chain`: every rule of it.
    pub fn flush_chain(&mut self, family: Family, table: &str, chain: &str) {
        let mut a = Attrs::new();
        a.str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, chain);
        self.push(
            NFT_MSG_DELRULE,
            0,
            family,
            a,
            format!("flush chain {} {table} {chain}", family.name()),
        );
    }

    /// `delete chain` (it must be empty and unreferenced).
    pub fn delete_chain(&mut self, family: Family, table: &str, chain: &str) {
        let mut a = Attrs::new();
        a.str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, chain);
        self.push(
            NFT_MSG_DELCHAIN,
            0,
            family,
            a,
            format!("delete chain {} {table} {chain}", family.name()),
        );
    }

    /// `add rule` (appended).
    pub fn add_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        exprs: &[Expr],
        comment: Option<&str>,
    ) -> Result<()> {
        let mut a = Attrs::new();
        a.str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain)
            .nested(NFTA_RULE_EXPRESSIONS, &expr::encode_list(exprs));
        if let Some(comment) = comment {
            a.bytes(
                NFTA_RULE_USERDATA,
                &comment_userdata(check_comment(comment)?),
            );
        }
        self.push(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            family,
            a,
            format!("add rule {} {table} {chain}", family.name()),
        );
        Ok(())
    }

    /// `delete rule ... handle N`.
    pub fn delete_rule(&mut self, family: Family, table: &str, chain: &str, handle: u64) {
        let mut a = Attrs::new();
        a.str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain)
            .u64(NFTA_RULE_HANDLE, handle);
        self.push(
            NFT_MSG_DELRULE,
            0,
            family,
            a,
            format!(
                "delete rule {} {table} {chain} handle {handle}",
                family.name()
            ),
        );
    }
}

/// Whether `e` says this kernel has no nf_tables (the netfilter socket exists, the
/// nf_tables subsystem does not answer): a DEL then has nothing to remove there.
pub fn unavailable(e: &NetError) -> bool {
    use crate::error::errno::{EINVAL, EOPNOTSUPP};
    const EPROTONOSUPPORT: i32 = 93;
    const EAFNOSUPPORT: i32 = 97;
    matches!(
        e.errno(),
        Some(EINVAL | EOPNOTSUPP | EPROTONOSUPPORT | EAFNOSUPPORT)
    )
}

/// Whether nf_tables can be used here: a socket that can list a table.
pub fn available() -> bool {
    Nft::open()
        .and_then(|mut n| n.list(Family::Inet, "cni_probe"))
        .is_ok()
}

/// A comment `nft` would accept: at most 128 bytes, no NUL.
fn check_comment(comment: &str) -> Result<&str> {
    if comment.len() > MAX_COMMENT || comment.contains('\0') {
        return Err(NetError::Invalid(format!(
            "nftables comment of {} bytes: at most {MAX_COMMENT}, without NUL",
            comment.len()
        )));
    }
    Ok(comment)
}

/// A table's chains and rules as the kernel holds them; a missing table has none.
#[derive(Debug, Default, Clone)]
pub struct Listing {
    pub chains: Vec<String>,
    pub rules: Vec<Rule>,
}

/// A rule as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub handle: u64,
    /// Empty when the rule has none.
    pub comment: String,
    pub exprs: Vec<Expr>,
}

impl Listing {
    pub fn has_chain(&self, chain: &str) -> bool {
        self.chains.iter().any(|c| c == chain)
    }

    /// Whether `chain` exists and holds exactly the rules `exprs`, in that order.
    pub fn chain_holds(&self, chain: &str, exprs: &[Vec<Expr>]) -> bool {
        self.has_chain(chain)
            && self
                .rules
                .iter()
                .filter(|r| r.chain == chain)
                .map(|r| &r.exprs)
                .eq(exprs.iter())
    }

    /// The rules `matches` picks.
    pub fn select(&self, matches: impl Fn(&Rule) -> bool) -> Vec<&Rule> {
        self.rules.iter().filter(|r| matches(r)).collect()
    }
}

/// A NETLINK_NETFILTER socket for nf_tables.
pub struct Nft {
    socket: Socket,
    sequence: u32,
}

impl Nft {
    pub fn open() -> Result<Nft> {
        let mut socket =
            Socket::new(NETLINK_NETFILTER).map_err(|e| NetError::io("open nftables socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| NetError::io("bind nftables socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| NetError::io("connect nftables socket", e))?;
        let _ = socket.set_ext_ack(true);
        Ok(Nft {
            socket,
            sequence: 0,
        })
    }

    fn next(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    /// Commits `batch` as one transaction: all of it, or (on the first error,
    /// reported with the kernel's reason) none of it.
    pub fn commit(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let begin = self.next();
        let mut packet = wire::message(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        for (kind, flags, family, attrs) in &batch.messages {
            let sequence = self.next();
            packet.extend(wire::message(
                NFNL_SUBSYS_NFTABLES << 8 | kind,
                NLM_F_REQUEST | NLM_F_ACK | flags,
                sequence,
                *family,
                0,
                &attrs.0,
            ));
        }
        let end = self.next();
        packet.extend(wire::message(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        ));
        self.send(&packet, "commit nftables batch")?;
        // Every message is acknowledged (or refused) before the kernel answers this
        // generation request, so its answer ends the reading.
        let probe = self.next();
        self.send(
            &wire::message(
                NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN,
                NLM_F_REQUEST,
                probe,
                0,
                0,
                &[],
            ),
            "ask nftables generation",
        )?;
        let mut first_error = None;
        self.receive("commit nftables batch", |message| {
            if message.kind == NLMSG_ERROR && message.sequence > begin && message.sequence < end {
                let errno = message
                    .body
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                if errno != 0 && first_error.is_none() {
                    let text = crate::rtnl::ack_text(message.flags, &message.body[4..]);
                    first_error = Some((errno.abs(), text));
                }
            }
            message.sequence == probe
        })?;
        match first_error {
            None => Ok(()),
            Some((errno, text)) => Err(NetError::Kernel {
                op: "nftables transaction".into(),
                errno,
                message: text,
            }),
        }
    }

    /// The chains and rules of `table` (none when it does not exist).
    pub fn list(&mut self, family: Family, table: &str) -> Result<Listing> {
        let mut listing = Listing::default();
        let sequence = self.next();
        let mut a = Attrs::new();
        a.str(NFTA_CHAIN_TABLE, table);
        self.send(
            &wire::message(
                NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETCHAIN,
                NLM_F_REQUEST | NLM_F_DUMP,
                sequence,
                family.wire(),
                0,
                &a.0,
            ),
            "list nftables chains",
        )?;
        let mut chains = Vec::new();
        self.receive_dump(sequence, "list nftables chains", |attrs| {
            if find(attrs, NFTA_CHAIN_TABLE).map(string).as_deref() == Some(table)
                && let Some(name) = find(attrs, NFTA_CHAIN_NAME)
            {
                chains.push(string(name));
            }
        })?;
        listing.chains = chains;
        if listing.chains.is_empty() {
            return Ok(listing);
        }
        let sequence = self.next();
        let mut a = Attrs::new();
        a.str(NFTA_RULE_TABLE, table);
        self.send(
            &wire::message(
                NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETRULE,
                NLM_F_REQUEST | NLM_F_DUMP,
                sequence,
                family.wire(),
                0,
                &a.0,
            ),
            "list nftables rules",
        )?;
        let mut rules = Vec::new();
        self.receive_dump(sequence, "list nftables rules", |attrs| {
            if let Some(rule) = rule_from(attrs, table) {
                rules.push(rule);
            }
        })?;
        listing.rules = rules;
        Ok(listing)
    }

    fn send(&mut self, packet: &[u8], op: &str) -> Result<()> {
        self.socket
            .send(packet, 0)
            .map_err(|e| NetError::io(op, e))
            .map(drop)
    }

    /// Reads messages until `done` says the last one came.
    fn receive(&mut self, op: &str, mut done: impl FnMut(&wire::Received) -> bool) -> Result<()> {
        loop {
            let (bytes, _) = self
                .socket
                .recv_from_full()
                .map_err(|e| NetError::io(op, e))?;
            for message in wire::messages(&bytes) {
                if done(&message) {
                    return Ok(());
                }
            }
        }
    }

    /// Reads a dump's messages, handing each one's attributes to `each`; a dump of
    /// a table that does not exist is empty, not an error.
    fn receive_dump(&mut self, sequence: u32, op: &str, mut each: impl FnMut(&[u8])) -> Result<()> {
        let mut failed = None;
        self.receive(op, |message| {
            if message.sequence != sequence {
                return false;
            }
            match message.kind {
                NLMSG_DONE => true,
                NLMSG_ERROR => {
                    let errno = message
                        .body
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(0)
                        .abs();
                    if errno != 0 && errno != crate::error::errno::ENOENT {
                        failed = Some(errno);
                    }
                    true
                }
                _ => {
                    if let Some(attrs) = message.body.get(4..) {
                        each(attrs);
                    }
                    false
                }
            }
        })?;
        match failed {
            Some(errno) => Err(NetError::kernel(op, errno)),
            None => Ok(()),
        }
    }
}

/// A rule of `table` from a dump message's attributes.
fn rule_from(attrs: &[u8], table: &str) -> Option<Rule> {
    if find(attrs, NFTA_RULE_TABLE).map(string).as_deref() != Some(table) {
        return None;
    }
    Some(Rule {
        chain: string(find(attrs, NFTA_RULE_CHAIN)?),
        handle: be_u64(find(attrs, NFTA_RULE_HANDLE)?)?,
        comment: find(attrs, NFTA_RULE_USERDATA)
            .and_then(comment_of)
            .unwrap_or_default(),
        exprs: find(attrs, NFTA_RULE_EXPRESSIONS)
            .map(expr::decode_list)
            .unwrap_or_default(),
    })
}

/// A rule message's attributes as the kernel dumps them, for the fuzz tests to mutate.
#[cfg(test)]
pub(crate) fn fuzz_seed() -> Vec<u8> {
    let mut e = matches::nfproto(false);
    e.extend(matches::address(
        matches::Field::Daddr,
        "224.0.0.0/4".parse().unwrap(),
        true,
    ));
    e.extend(matches::dnat("10.0.0.2".parse().unwrap(), 80));
    e.push(Expr::Verdict(Verdict::Jump("c".into())));
    let mut a = Attrs::new();
    a.str(NFTA_RULE_TABLE, "t")
        .str(NFTA_RULE_CHAIN, "c")
        .u64(NFTA_RULE_HANDLE, 7)
        .nested(NFTA_RULE_EXPRESSIONS, &expr::encode_list(&e))
        .bytes(NFTA_RULE_USERDATA, &comment_userdata("x"));
    a.0
}

/// Parses one dump reply message (attributes after `nfgenmsg`) as a rule, for the
/// fuzz tests: never panics.
#[cfg(test)]
pub(crate) fn fuzz_rule(attrs: &[u8]) {
    let _ = rule_from(attrs, "t");
    let _ = wire::walk(attrs).count();
    let _ = wire::be_u32(attrs);
}
