//! Traffic control: the qdiscs and the redirect filter the bandwidth plugin uses
//! (upstream: a root `tbf` on the host veth; an `ingress` qdisc on it whose filter
//! redirects every packet to an ifb, which has a root `tbf` of its own).
//!
//! `netlink-packet-route` has no tbf, so its options are packed here by hand
//! (`struct tc_tbf_qopt` in the kernel's `pkt_sched.h`).

use netlink_packet_core::{DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, Nla};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};

use crate::{NetError, Netlink, Result};

/// A handle as `tc` writes it, `major:minor` (the root of a device is `ffff:ffff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Handle {
    pub major: u16,
    pub minor: u16,
}

impl Handle {
    pub const ROOT: Handle = Handle {
        major: 0xffff,
        minor: 0xffff,
    };
    /// The ingress (and clsact) qdisc's parent, `ffff:fff1`.
    pub const INGRESS: Handle = Handle {
        major: 0xffff,
        minor: 0xfff1,
    };

    pub const fn new(major: u16, minor: u16) -> Handle {
        Handle { major, minor }
    }

    fn wire(self) -> TcHandle {
        TcHandle {
            major: self.major,
            minor: self.minor,
        }
    }

    fn from_wire(h: TcHandle) -> Handle {
        Handle::new(h.major, h.minor)
    }
}

/// Token bucket parameters, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// Bytes per second.
    pub rate: u64,
    /// Bytes that may queue (`limit`).
    pub limit: u32,
    /// The bucket, in scheduler ticks (`buffer`; `tc` converts a burst in bytes
    /// with `/proc/net/psched`).
    pub buffer: u32,
}

/// The qdisc kinds plugins use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QdiscKind {
    Ingress,
    Clsact,
    Tbf(Tbf),
    Other(String),
}

/// A qdisc on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    pub index: u32,
    pub handle: Handle,
    pub parent: Handle,
    pub kind: QdiscKind,
}

/// A filter that sends every packet of `parent` on link `index` out of link `to`
/// (`tc filter add dev X parent ffff: protocol all u32 match u32 0 0 action mirred
/// egress redirect dev Y`, upstream bandwidth's filter; u32, because kernels without
/// `cls_matchall` exist, this one among them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub index: u32,
    pub parent: Handle,
    pub to: u32,
}

/// Scheduler ticks per microsecond, from `/proc/net/psched`'s four hex numbers
/// (ticks-to-µs, µs-to-ticks, clock resolution, HZ), computed as `tc` and
/// upstream's netlink library compute it: tbf's `buffer` is a time in ticks.
pub fn ticks_per_usec(psched: &str) -> Result<f64> {
    let numbers: Vec<u64> = psched
        .split_whitespace()
        .take(4)
        .map(|n| u64::from_str_radix(n, 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| NetError::Invalid(format!("/proc/net/psched {psched:?}: {e}")))?;
    let [mut t2us, us2t, resolution, _hz] = numbers[..] else {
        return Err(NetError::Invalid(format!(
            "/proc/net/psched {psched:?}: want four numbers"
        )));
    };
    if us2t == 0 {
        return Err(NetError::Invalid(format!("/proc/net/psched {psched:?}")));
    }
    // Old kernels report a 1 GHz clock with ticks in ns.
    if resolution == 1_000_000_000 {
        t2us = us2t;
    }
    let clock_factor = resolution as f64 / 1_000_000.0;
    Ok(t2us as f64 / us2t as f64 * clock_factor)
}

const ETH_P_ALL: u16 = 0x0003;
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;

impl Netlink {
    /// Adds `qdisc`; one already at that parent answers `already_exists()`.
    pub fn add_qdisc(&mut self, qdisc: &Qdisc) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewQueueDiscipline(qdisc_message(qdisc)?),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!(
                "failed to add {:?} qdisc on link {}",
                qdisc.kind, qdisc.index
            ),
        )
        .map(drop)
    }

    /// Deletes the qdisc at `parent` of link `index`, with its filters.
    pub fn del_qdisc(&mut self, index: u32, parent: Handle) -> Result<()> {
        let mut message = TcMessage::default();
        message.header.index = index as i32;
        message.header.parent = parent.wire();
        self.request(
            RouteNetlinkMessage::DelQueueDiscipline(message),
            NLM_F_ACK,
            &format!("failed to delete qdisc {parent:?} of link {index}"),
        )
        .map(drop)
    }

    /// The qdiscs of link `index`.
    pub fn qdiscs(&mut self, index: u32) -> Result<Vec<Qdisc>> {
        let mut message = TcMessage::default();
        message.header.index = index as i32;
        let replies = self.dump(
            RouteNetlinkMessage::GetQueueDiscipline(message),
            "list qdiscs",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewQueueDiscipline(m) => qdisc_from_message(&m),
                _ => None,
            })
            .filter(|q| q.index == index)
            .collect())
    }

    /// Adds a [`Redirect`] filter.
    pub fn add_redirect(&mut self, redirect: &Redirect) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewTrafficFilter(redirect_message(redirect)),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!(
                "failed to add a redirect from link {} to link {}",
                redirect.index, redirect.to
            ),
        )
        .map(drop)
    }
}

pub(crate) fn qdisc_message(qdisc: &Qdisc) -> Result<TcMessage> {
    let mut message = TcMessage::default();
    message.header.index = i32::try_from(qdisc.index)
        .map_err(|_| NetError::Invalid(format!("link index {}", qdisc.index)))?;
    message.header.handle = qdisc.handle.wire();
    message.header.parent = qdisc.parent.wire();
    let (kind, options) = match &qdisc.kind {
        QdiscKind::Ingress => ("ingress", vec![]),
        QdiscKind::Clsact => ("clsact", vec![]),
        QdiscKind::Tbf(tbf) => ("tbf", tbf_options(tbf)),
        QdiscKind::Other(kind) => (kind.as_str(), vec![]),
    };
    message.attributes.push(TcAttribute::Kind(kind.to_string()));
    if !options.is_empty() {
        message.attributes.push(TcAttribute::Options(options));
    }
    Ok(message)
}

/// `TCA_TBF_PARMS` (`struct tc_tbf_qopt`: rate and peak `tc_ratespec`, limit, buffer,
/// mtu) and `TCA_TBF_RATE64` when the rate does not fit 32 bits.
fn tbf_options(tbf: &Tbf) -> Vec<TcOption> {
    let mut parms = Vec::with_capacity(36);
    // tc_ratespec: cell_log, linklayer (1 = ethernet), overhead, cell_align, mpu, rate.
    parms.extend_from_slice(&[0, 1]);
    parms.extend_from_slice(&0u16.to_ne_bytes());
    parms.extend_from_slice(&(-1i16).to_ne_bytes());
    parms.extend_from_slice(&0u16.to_ne_bytes());
    parms.extend_from_slice(&(u32::try_from(tbf.rate).unwrap_or(u32::MAX)).to_ne_bytes());
    parms.extend_from_slice(&[0u8; 12]); // no peak rate
    parms.extend_from_slice(&tbf.limit.to_ne_bytes());
    parms.extend_from_slice(&tbf.buffer.to_ne_bytes());
    parms.extend_from_slice(&0u32.to_ne_bytes()); // mtu
    let mut options = vec![TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, parms))];
    if tbf.rate > u64::from(u32::MAX) {
        options.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_RATE64,
            tbf.rate.to_ne_bytes().to_vec(),
        )));
    }
    options
}

/// Reads tbf's options. The netlink crate does not know tbf, so a parsed message
/// holds the whole `TCA_OPTIONS` as one opaque attribute: its nested attributes are
/// walked here (a message built here holds them one by one).
fn tbf_from_options(options: &[TcOption]) -> Option<Tbf> {
    const TCA_OPTIONS: u16 = 2;
    let mut nested: Vec<(u16, Vec<u8>)> = Vec::new();
    for option in options {
        let TcOption::Other(nla) = option else {
            continue;
        };
        let mut value = vec![0u8; nla.value_len()];
        nla.emit_value(&mut value);
        if nla.kind() == TCA_OPTIONS {
            nested.extend(walk(&value));
        } else {
            nested.push((nla.kind(), value));
        }
    }
    let mut tbf = None;
    let mut rate64 = None;
    for (kind, value) in nested {
        match kind {
            TCA_TBF_PARMS if value.len() >= 36 => {
                let u32_at = |at: usize| {
                    u32::from_ne_bytes([value[at], value[at + 1], value[at + 2], value[at + 3]])
                };
                tbf = Some(Tbf {
                    rate: u64::from(u32_at(8)),
                    limit: u32_at(24),
                    buffer: u32_at(28),
                });
            }
            TCA_TBF_RATE64 if value.len() >= 8 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&value[..8]);
                rate64 = Some(u64::from_ne_bytes(bytes));
            }
            _ => {}
        }
    }
    tbf.map(|t| Tbf {
        rate: rate64.unwrap_or(t.rate),
        ..t
    })
}

/// (type, value) of each attribute in `area`; stops at a malformed one.
fn walk(area: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset + 4 <= area.len() {
        let len = u16::from_ne_bytes([area[offset], area[offset + 1]]) as usize;
        let kind = u16::from_ne_bytes([area[offset + 2], area[offset + 3]]) & 0x3fff;
        if len < 4 || offset + len > area.len() {
            break;
        }
        out.push((kind, area[offset + 4..offset + len].to_vec()));
        offset += (len + 3) & !3;
    }
    out
}

pub(crate) fn qdisc_from_message(message: &TcMessage) -> Option<Qdisc> {
    let mut kind = None;
    let mut options: &[TcOption] = &[];
    for attribute in &message.attributes {
        match attribute {
            TcAttribute::Kind(k) => kind = Some(k.as_str()),
            TcAttribute::Options(o) => options = o,
            _ => {}
        }
    }
    let kind = match kind? {
        "ingress" => QdiscKind::Ingress,
        "clsact" => QdiscKind::Clsact,
        "tbf" => QdiscKind::Tbf(tbf_from_options(options)?),
        other => QdiscKind::Other(other.to_string()),
    };
    Some(Qdisc {
        index: u32::try_from(message.header.index).ok()?,
        handle: Handle::from_wire(message.header.handle),
        parent: Handle::from_wire(message.header.parent),
        kind,
    })
}

fn redirect_message(redirect: &Redirect) -> TcMessage {
    let mut message = TcMessage::default();
    message.header.index = redirect.index as i32;
    message.header.parent = redirect.parent.wire();
    // tcm_info: priority in the upper 16 bits, protocol (network order) in the lower.
    message.header.info = (1 << 16) | u32::from(ETH_P_ALL.to_be());
    let mut generic = TcActionGeneric::default();
    generic.action = TcActionType::Stolen;
    let mut mirror = TcMirror::default();
    mirror.generic = generic;
    mirror.eaction = TcMirrorActionType::EgressRedir;
    mirror.ifindex = redirect.to;
    let mut action = TcAction::default();
    action.tab = 1;
    action.attributes = vec![
        TcActionAttribute::Kind("mirred".into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    // One key that matches every packet (mask 0).
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = 1;
    selector.keys = vec![TcU32Key::default()];
    message.attributes.push(TcAttribute::Kind("u32".into()));
    message.attributes.push(TcAttribute::Options(vec![
        TcOption::U32(TcFilterU32Option::Selector(selector)),
        TcOption::U32(TcFilterU32Option::Action(vec![action])),
    ]));
    message
}

/// The redirect target of a filter message, if it is a mirred redirect.
pub(crate) fn redirect_target(message: &TcMessage) -> Option<u32> {
    let actions = message.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(options) => options.iter().find_map(|o| match o {
            TcOption::U32(TcFilterU32Option::Action(actions)) => Some(actions),
            _ => None,
        }),
        _ => None,
    })?;
    actions.iter().find_map(|action| {
        action.attributes.iter().find_map(|a| match a {
            TcActionAttribute::Options(opts) => opts.iter().find_map(|o| match o {
                TcActionOption::Mirror(TcActionMirrorOption::Parms(p)) => Some(p.ifindex),
                _ => None,
            }),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn psched_gives_upstreams_ticks_per_microsecond() {
        let ticks = super::ticks_per_usec("000003e8 00000040 000f4240 3b9aca00\n").unwrap();
        assert_eq!(ticks, 15.625);
        assert!(super::ticks_per_usec("0 0 0 0").is_err());
        assert!(super::ticks_per_usec("zz").is_err());
    }
    use super::*;

    #[test]
    fn tbf_options_read_back() {
        for rate in [125_000u64, 10_000_000_000] {
            let tbf = Tbf {
                rate,
                limit: 5000,
                buffer: 800,
            };
            let qdisc = Qdisc {
                index: 3,
                handle: Handle::new(1, 0),
                parent: Handle::ROOT,
                kind: QdiscKind::Tbf(tbf),
            };
            let message = qdisc_message(&qdisc).unwrap();
            assert_eq!(qdisc_from_message(&message), Some(qdisc));
        }
    }
}
