//! nf_tables' wire format: netlink attributes (nested, big-endian numbers), the
//! `nfgenmsg` header, and a walker over received attributes that never reads past
//! its buffer.

/// Attributes being built; nested ones are finished with [`Attrs::nested`].
#[derive(Default, Clone)]
pub(crate) struct Attrs(pub(crate) Vec<u8>);

const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

impl Attrs {
    pub(crate) fn new() -> Attrs {
        Attrs(Vec::new())
    }

    fn raw(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }

    pub(crate) fn bytes(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        self.raw(kind, value)
    }

    /// A NUL-terminated string.
    pub(crate) fn str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.raw(kind, &bytes)
    }

    pub(crate) fn u32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.raw(kind, &value.to_be_bytes())
    }

    pub(crate) fn u64(&mut self, kind: u16, value: u64) -> &mut Self {
        self.raw(kind, &value.to_be_bytes())
    }

    pub(crate) fn nested(&mut self, kind: u16, inner: &Attrs) -> &mut Self {
        self.raw(kind | NLA_F_NESTED, &inner.0)
    }
}

/// (type, value) of each attribute in `area`; a malformed one ends the walk.
pub(crate) fn walk(area: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        if offset + 4 > area.len() {
            return None;
        }
        let len = u16::from_ne_bytes([area[offset], area[offset + 1]]) as usize;
        let kind = u16::from_ne_bytes([area[offset + 2], area[offset + 3]]) & NLA_TYPE_MASK;
        if len < 4 || offset + len > area.len() {
            return None;
        }
        let value = &area[offset + 4..offset + len];
        offset += (len + 3) & !3;
        Some((kind, value))
    })
}

/// The value of attribute `kind` in `area`.
pub(crate) fn find(area: &[u8], kind: u16) -> Option<&[u8]> {
    walk(area).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

pub(crate) fn be_u32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?))
}

pub(crate) fn be_u64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// A NUL-terminated string attribute.
pub(crate) fn string(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// One netlink message: header, `nfgenmsg` (family, version 0, resource id), body.
pub(crate) fn message(
    kind: u16,
    flags: u16,
    sequence: u32,
    family: u8,
    res_id: u16,
    body: &[u8],
) -> Vec<u8> {
    let length = 16 + 4 + body.len();
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&(length as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&sequence.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(family);
    out.push(0);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A received message: its type, flags, sequence number and body after `nfgenmsg`
/// (for errors: the errno and the rest).
pub(crate) struct Received<'a> {
    pub(crate) kind: u16,
    pub(crate) flags: u16,
    pub(crate) sequence: u32,
    pub(crate) body: &'a [u8],
}

/// The messages in a received buffer; a malformed length ends the walk.
pub(crate) fn messages(buffer: &[u8]) -> impl Iterator<Item = Received<'_>> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        if offset + 16 > buffer.len() {
            return None;
        }
        let len = u32::from_ne_bytes(buffer[offset..offset + 4].try_into().ok()?) as usize;
        if len < 16 || offset + len > buffer.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([buffer[offset + 4], buffer[offset + 5]]);
        let flags = u16::from_ne_bytes([buffer[offset + 6], buffer[offset + 7]]);
        let sequence = u32::from_ne_bytes(buffer[offset + 8..offset + 12].try_into().ok()?);
        let body = &buffer[offset + 16..offset + len];
        offset += (len + 3) & !3;
        Some(Received {
            kind,
            flags,
            sequence,
            body,
        })
    })
}

/// `NFNL_UDATA` comment TLV, as `nft` writes it into a table's, chain's or rule's
/// userdata: type 0, length (with the NUL), the text, a NUL.
pub(crate) fn comment_userdata(comment: &str) -> Vec<u8> {
    let mut out = vec![0u8, (comment.len() + 1) as u8];
    out.extend_from_slice(comment.as_bytes());
    out.push(0);
    out
}

/// The comment in a userdata blob, if it has one.
pub(crate) fn comment_of(userdata: &[u8]) -> Option<String> {
    let mut offset = 0;
    while offset + 2 <= userdata.len() {
        let kind = userdata[offset];
        let len = userdata[offset + 1] as usize;
        let value = userdata.get(offset + 2..offset + 2 + len)?;
        if kind == 0 {
            return Some(string(value));
        }
        offset += 2 + len;
    }
    None
}
