//! Policy routing rules (`ip rule`), for sbr and vrf.

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::RouteHeader;
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};

use super::Family;
use crate::{NetError, Netlink, Result};

/// A rule that looks a packet up in `table` (`ip rule add ... table N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub family: Family,
    /// `None`: the kernel picks one (just below the last rule); as `ip rule` shows it
    /// when read back.
    pub priority: Option<u32>,
    pub table: u32,
    /// Match the source (`from`).
    pub src: Option<IpNet>,
    /// Match the destination (`to`).
    pub dst: Option<IpNet>,
    /// Match the input interface (`iif`).
    pub iif: Option<String>,
    /// Match the output interface (`oif`).
    pub oif: Option<String>,
}

impl Rule {
    /// `from SRC lookup TABLE`.
    pub fn from_source(src: IpNet, table: u32) -> Rule {
        Rule {
            family: Family::of(&src.addr()),
            priority: None,
            table,
            src: Some(src),
            dst: None,
            iif: None,
            oif: None,
        }
    }
}

impl Netlink {
    /// Adds `rule`; an identical one answers `already_exists()`.
    pub fn add_rule(&mut self, rule: &Rule) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewRule(rule_message(rule)?),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!("failed to add rule {}", describe(rule)),
        )
        .map(drop)
    }

    /// Deletes the first rule matching `rule` (unset fields match anything); none
    /// answers `already_gone()`.
    pub fn del_rule(&mut self, rule: &Rule) -> Result<()> {
        self.request(
            RouteNetlinkMessage::DelRule(rule_message(rule)?),
            NLM_F_ACK,
            &format!("failed to delete rule {}", describe(rule)),
        )
        .map(drop)
    }

    /// The rules of one family, in priority order.
    pub fn rules(&mut self, family: Family) -> Result<Vec<Rule>> {
        let mut message = RuleMessage::default();
        message.header.family = family.wire();
        let replies = self.dump(RouteNetlinkMessage::GetRule(message), "list rules")?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRule(m) => rule_from_message(&m),
                _ => None,
            })
            .collect())
    }
}

fn describe(rule: &Rule) -> String {
    let mut text = String::new();
    if let Some(src) = rule.src {
        text.push_str(&format!("from {src} "));
    }
    if let Some(dst) = rule.dst {
        text.push_str(&format!("to {dst} "));
    }
    text.push_str(&format!("table {}", rule.table));
    text
}

/// The message for `rule` (requests, and the fake kernel's reports).
pub(crate) fn rule_message(rule: &Rule) -> Result<RuleMessage> {
    let mut message = RuleMessage::default();
    message.header.family = rule.family.wire();
    message.header.action = RuleAction::ToTable;
    message.header.table = if rule.table < 256 {
        rule.table as u8
    } else {
        RouteHeader::RT_TABLE_UNSPEC
    };
    let attributes = &mut message.attributes;
    attributes.push(RuleAttribute::Table(rule.table));
    if let Some(priority) = rule.priority {
        attributes.push(RuleAttribute::Priority(priority));
    }
    for (net, is_src) in [(rule.src, true), (rule.dst, false)] {
        let Some(net) = net else { continue };
        if Family::of(&net.addr()) != rule.family {
            return Err(NetError::Invalid(format!(
                "rule address {net} is not of the rule's family"
            )));
        }
        if is_src {
            message.header.src_len = net.prefix_len();
            message
                .attributes
                .push(RuleAttribute::Source(net.network()));
        } else {
            message.header.dst_len = net.prefix_len();
            message
                .attributes
                .push(RuleAttribute::Destination(net.network()));
        }
    }
    for (name, iif) in [(&rule.iif, true), (&rule.oif, false)] {
        let Some(name) = name else { continue };
        super::link::check_name(name)?;
        message.attributes.push(if iif {
            RuleAttribute::Iifname(name.clone())
        } else {
            RuleAttribute::Oifname(name.clone())
        });
    }
    Ok(message)
}

pub(crate) fn rule_from_message(message: &RuleMessage) -> Option<Rule> {
    let mut rule = Rule {
        family: Family::from_wire(message.header.family)?,
        priority: None,
        table: u32::from(message.header.table),
        src: None,
        dst: None,
        iif: None,
        oif: None,
    };
    for attribute in &message.attributes {
        match attribute {
            RuleAttribute::Table(t) => rule.table = *t,
            RuleAttribute::Priority(p) => rule.priority = Some(*p),
            RuleAttribute::Source(ip) => {
                rule.src = IpNet::new(*ip, message.header.src_len).ok();
            }
            RuleAttribute::Destination(ip) => {
                rule.dst = IpNet::new(*ip, message.header.dst_len).ok();
            }
            RuleAttribute::Iifname(n) => rule.iif = Some(n.clone()),
            RuleAttribute::Oifname(n) => rule.oif = Some(n.clone()),
            _ => {}
        }
    }
    Some(rule)
}

/// Whether a delete request (unset fields match anything) names `rule`.
pub(crate) fn delete_matches(request: &Rule, rule: &Rule) -> bool {
    request.family == rule.family
        && (request.table == 0 || request.table == rule.table)
        && request.priority.is_none_or(|p| Some(p) == rule.priority)
        && request.src.is_none_or(|s| Some(s) == rule.src)
        && request.dst.is_none_or(|d| Some(d) == rule.dst)
        && request
            .iif
            .as_ref()
            .is_none_or(|i| Some(i) == rule.iif.as_ref())
        && request
            .oif
            .as_ref()
            .is_none_or(|o| Some(o) == rule.oif.as_ref())
}
