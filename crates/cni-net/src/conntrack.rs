//! Conntrack entry removal over ctnetlink (upstream `pkg/utils` conntrack helpers).
//!
//! portmap clears UDP entries for a host port after it points the port at a new
//! container: UDP "connections" live on in conntrack while traffic keeps flowing,
//! so without this a client would keep reaching the old container's address
//! (plugins#123). Like upstream (vishvananda/netlink), the table is dumped and the
//! matching entries are deleted one request each, on one socket, without any process.
//!
//! The messages are small and fixed, so they are built here by hand: the netlink
//! crates have no ctnetlink support worth a dependency.

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use crate::{NetError, Result};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;

const NLA_TYPE_MASK: u16 = 0x3fff;
const ENOENT: i32 = 2;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Deletes every conntrack entry of one family (`v6`) whose original direction has
/// protocol `protocol` and destination port `port`. Returns how many were deleted.
pub fn delete_by_dst_port(v6: bool, protocol: u8, port: u16) -> Result<usize> {
    let family = if v6 {
        nix::libc::AF_INET6
    } else {
        nix::libc::AF_INET
    } as u8;
    let mut socket = Ctnetlink::open()?;
    let entries = socket.dump(family)?;
    let mut deleted = 0;
    for entry in entries {
        let Some(tuple) = attribute(&entry, CTA_TUPLE_ORIG) else {
            continue;
        };
        if tuple_matches(tuple_payload(tuple), protocol, port) {
            let zone = attribute(&entry, CTA_ZONE);
            match socket.delete(family, tuple, zone) {
                Ok(()) => deleted += 1,
                // Expired between the dump and the delete.
                Err(e) if e.errno() == Some(ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

struct Ctnetlink {
    socket: Socket,
    sequence: u32,
}

impl Ctnetlink {
    fn open() -> Result<Ctnetlink> {
        let mut socket =
            Socket::new(NETLINK_NETFILTER).map_err(|e| NetError::io("open ctnetlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| NetError::io("bind ctnetlink socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| NetError::io("connect ctnetlink socket", e))?;
        Ok(Ctnetlink {
            socket,
            sequence: 0,
        })
    }

    /// The attribute area of every entry of `family`.
    fn dump(&mut self, family: u8) -> Result<Vec<Vec<u8>>> {
        self.send(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, family, &[])?;
        let mut entries = Vec::new();
        self.receive("dump conntrack entries", |body| entries.push(body.to_vec()))?;
        Ok(entries)
    }

    /// Deletes the entry with this original tuple (and zone, when it has one).
    fn delete(&mut self, family: u8, tuple: &[u8], zone: Option<&[u8]>) -> Result<()> {
        let mut attributes = tuple.to_vec();
        pad(&mut attributes);
        if let Some(zone) = zone {
            attributes.extend_from_slice(zone);
            pad(&mut attributes);
        }
        self.send(
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            family,
            &attributes,
        )?;
        self.receive("delete conntrack entry", |_| {})
    }

    fn send(&mut self, message: u16, flags: u16, family: u8, attributes: &[u8]) -> Result<()> {
        self.sequence = self.sequence.wrapping_add(1);
        let length = 16 + 4 + attributes.len();
        let mut packet = Vec::with_capacity(length);
        packet.extend_from_slice(&(length as u32).to_ne_bytes());
        packet.extend_from_slice(&(NFNL_SUBSYS_CTNETLINK << 8 | message).to_ne_bytes());
        packet.extend_from_slice(&flags.to_ne_bytes());
        packet.extend_from_slice(&self.sequence.to_ne_bytes());
        packet.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family, version 0, resource id 0 (big endian).
        packet.extend_from_slice(&[family, 0, 0, 0]);
        packet.extend_from_slice(attributes);
        self.socket
            .send(&packet, 0)
            .map_err(|e| NetError::io("send ctnetlink request", e))?;
        Ok(())
    }

    /// Reads replies to the last request until its ack, error or end of dump, handing
    /// each data message's attribute area to `each`.
    fn receive(&mut self, op: &str, mut each: impl FnMut(&[u8])) -> Result<()> {
        loop {
            let (bytes, _) = self
                .socket
                .recv_from_full()
                .map_err(|e| NetError::io(op, e))?;
            let mut offset = 0;
            while offset + 16 <= bytes.len() {
                let length = u32_at(&bytes, offset) as usize;
                let kind = u16::from_ne_bytes([bytes[offset + 4], bytes[offset + 5]]);
                let sequence = u32_at(&bytes, offset + 8);
                if length < 16 || offset + length > bytes.len() {
                    return Err(NetError::Decode {
                        op: op.to_string(),
                        detail: format!("message length {length}"),
                    });
                }
                let body = &bytes[offset + 16..offset + length];
                offset += (length + 3) & !3;
                if sequence != self.sequence {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        // The errno, negated; a body too short to hold one is an ack.
                        let code = if body.len() >= 4 {
                            u32_at(body, 0) as i32
                        } else {
                            0
                        };
                        if code == 0 {
                            return Ok(());
                        }
                        return Err(NetError::Kernel {
                            op: op.to_string(),
                            errno: code.abs(),
                            message: None,
                        });
                    }
                    // Data: skip the 4-byte nfgenmsg.
                    _ if body.len() >= 4 => each(&body[4..]),
                    _ => {}
                }
            }
        }
    }
}

/// A native-endian u32 at `at`; callers check the length first.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn pad(bytes: &mut Vec<u8>) {
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
}

/// The whole attribute (header included) of type `kind` in an attribute area.
fn attribute(area: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(area).find(|(k, _)| *k == kind).map(|(_, a)| a)
}

fn tuple_payload(attribute: &[u8]) -> &[u8] {
    &attribute[4..]
}

/// (type, whole attribute) pairs of an attribute area.
fn attributes(area: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        if offset + 4 > area.len() {
            return None;
        }
        let length = u16::from_ne_bytes([area[offset], area[offset + 1]]) as usize;
        let kind = u16::from_ne_bytes([area[offset + 2], area[offset + 3]]) & NLA_TYPE_MASK;
        if length < 4 || offset + length > area.len() {
            return None;
        }
        let whole = &area[offset..offset + length];
        offset += (length + 3) & !3;
        Some((kind, whole))
    })
}

/// Whether a tuple's protocol part is `protocol` with destination port `port`.
fn tuple_matches(tuple: &[u8], protocol: u8, port: u16) -> bool {
    let Some(proto) = attribute(tuple, CTA_TUPLE_PROTO).map(tuple_payload) else {
        return false;
    };
    let number = attribute(proto, CTA_PROTO_NUM).and_then(|a| a.get(4).copied());
    let dst_port = attribute(proto, CTA_PROTO_DST_PORT)
        .and_then(|a| a.get(4..6))
        .map(|b| u16::from_be_bytes([b[0], b[1]]));
    number == Some(protocol) && dst_port == Some(port)
}

/// Reads an entry the way [`delete_by_dst_port`] does (for the fuzz tests).
#[cfg(test)]
pub(crate) fn fuzz_entry(entry: &[u8]) {
    for kind in [CTA_TUPLE_ORIG, CTA_ZONE, 0, 0xffff] {
        if let Some(tuple) = attribute(entry, kind) {
            let _ = tuple_matches(tuple_payload(tuple), IPPROTO_UDP, 53);
        }
    }
    let _ = attributes(entry).count();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        pad(&mut out);
        out
    }

    #[test]
    fn tuples_match_on_protocol_and_destination_port() {
        let nested = 0x8000;
        let ip = nla(
            1 | nested,
            &[nla(1, &[10, 0, 0, 1]), nla(2, &[10, 0, 0, 2])].concat(),
        );
        let proto = |number: u8, dport: u16| {
            nla(
                CTA_TUPLE_PROTO | nested,
                &[
                    nla(CTA_PROTO_NUM, &[number]),
                    nla(2, &4000u16.to_be_bytes()),
                    nla(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
                ]
                .concat(),
            )
        };
        let entry = |number, dport| {
            [
                nla(
                    CTA_TUPLE_ORIG | nested,
                    &[ip.clone(), proto(number, dport)].concat(),
                ),
                nla(CTA_ZONE, &0u16.to_be_bytes()),
            ]
            .concat()
        };
        let udp = entry(IPPROTO_UDP, 5300);
        let tuple = attribute(&udp, CTA_TUPLE_ORIG).unwrap();
        assert!(tuple_matches(tuple_payload(tuple), IPPROTO_UDP, 5300));
        assert!(!tuple_matches(tuple_payload(tuple), IPPROTO_UDP, 5301));
        assert!(!tuple_matches(tuple_payload(tuple), IPPROTO_TCP, 5300));
        assert_eq!(attribute(&udp, CTA_ZONE).unwrap().len(), 6);
        // A truncated area ends the walk instead of reading past it.
        assert!(attributes(&udp[..3]).next().is_none());
    }
}
