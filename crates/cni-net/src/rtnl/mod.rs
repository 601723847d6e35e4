//! rtnetlink: links, addresses, routes, policy rules and tc, over one synchronous
//! socket per namespace.
//!
//! Every verb builds its message (pure, in the module of its object) and hands it to
//! [`Netlink::request`], which sends it through the transport: the kernel's socket, or
//! the [`fake`] kernel. The fake receives each message serialised and parsed back, so
//! it sees exactly the bytes the kernel would, and it answers with the same errnos and
//! dumps. A socket belongs to the namespace it was opened in for its whole life;
//! [`crate::Kernel::netlink`] opens one inside a container's namespace so the caller's
//! thread can stay in the host namespace (netavark does the same).

pub mod addr;
// The fake kernel is for tests (the `fake` feature, which `cni-testkit` and the
// plugins' tests turn on); the shipped binary gets a stub that cannot be made.
#[cfg(any(test, feature = "fake"))]
pub mod fake;
#[cfg(not(any(test, feature = "fake")))]
#[path = "fake_stub.rs"]
pub mod fake;
pub mod link;
pub mod route;
pub mod rule;
pub mod tc;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_ECHO, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::{NetError, Result};

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &std::net::IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    pub(crate) fn wire(self) -> netlink_packet_route::AddressFamily {
        match self {
            Family::V4 => netlink_packet_route::AddressFamily::Inet,
            Family::V6 => netlink_packet_route::AddressFamily::Inet6,
        }
    }

    pub(crate) fn from_wire(family: netlink_packet_route::AddressFamily) -> Option<Family> {
        match family {
            netlink_packet_route::AddressFamily::Inet => Some(Family::V4),
            netlink_packet_route::AddressFamily::Inet6 => Some(Family::V6),
            _ => None,
        }
    }
}

/// Dumps interrupted by a concurrent change are retried this many times, then the
/// partial answer is used (as upstream's `netlinksafe`).
const DUMP_TRIES: usize = 5;

/// An rtnetlink socket.
pub struct Netlink {
    transport: Transport,
    sequence: u32,
}

enum Transport {
    Kernel(Socket),
    Fake(fake::Socket),
}

impl Netlink {
    /// Opens a socket to the kernel in the calling thread's namespace.
    pub(crate) fn open_kernel() -> Result<Netlink> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| NetError::io("open netlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| NetError::io("bind netlink socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| NetError::io("connect netlink socket", e))?;
        // Best effort: extended acks give the kernel's reason ("Unknown device type");
        // capped acks keep error replies small.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        // Strict checking lets the kernel filter dumps (addresses of one link) instead
        // of sending the whole namespace; on kernels without it we filter ourselves.
        let _ = socket.set_netlink_get_strict_chk(true);
        Ok(Netlink {
            transport: Transport::Kernel(socket),
            sequence: 0,
        })
    }

    pub(crate) fn open_fake(socket: fake::Socket) -> Netlink {
        Netlink {
            transport: Transport::Fake(socket),
            sequence: 0,
        }
    }

    /// Every reply of a dump, retried when the kernel flags it as interrupted.
    pub(crate) fn dump(
        &mut self,
        message: RouteNetlinkMessage,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut last = Vec::new();
        for _ in 0..DUMP_TRIES {
            let (replies, interrupted) = self.exchange(message.clone(), NLM_F_DUMP, op)?;
            if !interrupted {
                return Ok(replies);
            }
            last = replies;
        }
        Ok(last)
    }

    /// One request; `flags` are added to `NLM_F_REQUEST`.
    pub(crate) fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(message, flags, op)
            .map(|(replies, _)| replies)
    }

    /// Sends one request and collects the replies until the ack, the error or the end
    /// of the dump. Returns whether the kernel flagged the dump as interrupted.
    ///
    /// A request with `NLM_F_ECHO` gets the kernel's notification of what it did
    /// before its ack; it is read up to the ack, since a later step of the same
    /// request (enslaving a new link, say) may still fail.
    fn exchange(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool)> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buffer = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buffer);

        let socket = match &mut self.transport {
            Transport::Kernel(socket) => socket,
            Transport::Fake(fake) => {
                // The fake gets what the kernel would: the message parsed from its bytes.
                let inner = parse_request(&buffer, op)?;
                return fake
                    .handle(inner, header.flags)
                    .map(|replies| (replies, false))
                    .map_err(|errno| NetError::kernel(op, errno));
            }
        };
        socket.send(&buffer, 0).map_err(|e| NetError::io(op, e))?;

        let expects_more = flags & NLM_F_DUMP == NLM_F_DUMP || flags & NLM_F_ECHO != 0;
        let mut replies = Replies::default();
        loop {
            let (bytes, _) = socket.recv_from_full().map_err(|e| NetError::io(op, e))?;
            if decode_buffer(&bytes, self.sequence, expects_more, op, &mut replies)? {
                return Ok((replies.messages, replies.interrupted));
            }
        }
    }
}

/// What the replies to one request have brought so far.
#[derive(Default)]
struct Replies {
    messages: Vec<RouteNetlinkMessage>,
    interrupted: bool,
}

/// Reads one received buffer of replies to request `sequence` into `replies`;
/// `true` once the request is answered (its ack, the end of the dump, or the one reply
/// a plain request gets). A malformed buffer is an error, never a panic or a loop.
fn decode_buffer(
    bytes: &[u8],
    sequence: u32,
    expects_more: bool,
    op: &str,
    replies: &mut Replies,
) -> Result<bool> {
    let mut offset = 0;
    while offset < bytes.len() {
        let reply =
            NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[offset..]).map_err(|e| {
                NetError::Decode {
                    op: op.to_string(),
                    detail: e.to_string(),
                }
            })?;
        let length = (reply.header.length as usize).max(16);
        offset += (length + 3) & !3;
        if reply.header.sequence_number != sequence {
            continue;
        }
        if reply.header.flags & NLM_F_DUMP_INTR != 0 {
            replies.interrupted = true;
        }
        match reply.payload {
            NetlinkPayload::InnerMessage(inner) => {
                replies.messages.push(inner);
                if !expects_more {
                    return Ok(true);
                }
            }
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(error) => match error.code {
                None => return Ok(true),
                Some(code) => {
                    return Err(NetError::Kernel {
                        op: op.to_string(),
                        errno: code.get().abs(),
                        message: ack_text(reply.header.flags, &error.header),
                    });
                }
            },
            _ => {}
        }
    }
    Ok(false)
}

/// The request a fake kernel receives: the serialised message, parsed back.
fn parse_request(bytes: &[u8], op: &str) -> Result<RouteNetlinkMessage> {
    let decode = |detail: String| NetError::Decode {
        op: op.to_string(),
        detail,
    };
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
        Ok(NetlinkMessage {
            payload: NetlinkPayload::InnerMessage(inner),
            ..
        }) => Ok(inner),
        Ok(other) => Err(decode(format!("not a request: {:?}", other.header))),
        Err(e) => Err(decode(e.to_string())),
    }
}

/// The `NLMSGERR_ATTR_MSG` text of an error reply, if the kernel sent one. The payload
/// after the error code is the request's header (and, unless capped, its body), then
/// the extended-ack attributes.
pub(crate) fn ack_text(flags: u16, payload: &[u8]) -> Option<String> {
    const NLM_F_CAPPED: u16 = 0x100;
    const NLM_F_ACK_TLVS: u16 = 0x200;
    const NLMSGERR_ATTR_MSG: u16 = 1;
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < 16 {
        return None;
    }
    let mut offset = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        u32::from_ne_bytes(payload[0..4].try_into().ok()?) as usize
    };
    while offset + 4 <= payload.len() {
        let len = u16::from_ne_bytes(payload[offset..offset + 2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(payload[offset + 2..offset + 4].try_into().ok()?) & 0x3fff;
        if len < 4 || offset + len > payload.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &payload[offset + 4..offset + len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        offset += (len + 3) & !3;
    }
    None
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_ack_text_is_found_after_a_capped_header() {
        let mut payload = vec![0u8; 16];
        let text = b"Unknown device type\0";
        let len = (4 + text.len()) as u16;
        payload.extend_from_slice(&len.to_ne_bytes());
        payload.extend_from_slice(&1u16.to_ne_bytes());
        payload.extend_from_slice(text);
        assert_eq!(
            ack_text(0x300, &payload).as_deref(),
            Some("Unknown device type")
        );
        assert_eq!(ack_text(0, &payload), None);
    }

    #[test]
    fn a_truncated_reply_is_an_error_not_a_panic() {
        for len in 0..20 {
            let bytes = vec![0xffu8; len];
            assert!(parse_request(&bytes, "x").is_err());
        }
    }
}
