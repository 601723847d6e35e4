//! The nf_tables expressions our rule shapes use, encoded exactly as `nft` encodes
//! them (`reference/nftables.md` §6) and decoded from the kernel's dumps, so that a
//! listed rule compares equal to the rule we would write.

use super::wire::{Attrs, be_u32, find, string, walk};

/// `meta` keys.
pub const META_IIFNAME: u32 = 6;
pub const META_OIFNAME: u32 = 7;
pub const META_NFPROTO: u32 = 15;
pub const META_L4PROTO: u32 = 16;

/// Payload bases.
pub const LINK_HEADER: u32 = 0;
pub const NETWORK_HEADER: u32 = 1;
pub const TRANSPORT_HEADER: u32 = 2;

/// `ct` key of the connection state (`ct state`), and its bits (host order).
pub const CT_STATE: u32 = 0;
pub const CT_STATE_ESTABLISHED: u32 = 1 << 1;
pub const CT_STATE_RELATED: u32 = 1 << 2;

/// `fib` result and flag used by `fib daddr type`.
pub const FIB_RESULT_ADDRTYPE: u32 = 3;
pub const FIB_F_DADDR: u32 = 2;
/// `RTN_LOCAL`, the address type `fib daddr type local` compares with.
pub const RTN_LOCAL: u32 = 2;

/// A verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
}

/// NAT kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    Snat,
    Dnat,
}

/// Register 1, as `nft` uses it for everything it loads (16-byte register numbering).
pub const REG1: u32 = 1;
pub const REG2: u32 = 2;

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: u32,
        dreg: u32,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// `reg = (reg & mask) ^ xor`.
    Bitwise {
        reg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// `cmp` with `neq` when `equal` is false.
    Cmp {
        equal: bool,
        sreg: u32,
        data: Vec<u8>,
    },
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    Verdict(Verdict),
    Masq,
    /// `nat` with its address and port registers (minimum only, as `nft` writes it).
    Nat {
        kind: NatKind,
        family: u32,
        addr: Option<u32>,
        proto: Option<u32>,
        flags: u32,
    },
    Fib {
        result: u32,
        flags: u32,
        dreg: u32,
    },
    /// `ct` load of a conntrack key.
    Ct {
        key: u32,
        dreg: u32,
    },
    /// An expression we do not write (a counter, a lookup, ...): by name.
    Other(String),
}

const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;

fn data(value: &[u8]) -> Attrs {
    let mut a = Attrs::new();
    a.bytes(NFTA_DATA_VALUE, value);
    a
}

impl Expr {
    /// The expression's name and its `NFTA_EXPR_DATA` attributes.
    pub(crate) fn encode(&self) -> (&'static str, Option<Attrs>) {
        let mut a = Attrs::new();
        let name = match self {
            Expr::Meta { key, dreg } => {
                a.u32(2, *key).u32(1, *dreg);
                "meta"
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                a.u32(1, *dreg).u32(2, *base).u32(3, *offset).u32(4, *len);
                "payload"
            }
            Expr::Bitwise { reg, mask, xor } => {
                a.u32(1, *reg)
                    .u32(2, *reg)
                    .u32(3, mask.len() as u32)
                    .nested(4, &data(mask))
                    .nested(5, &data(xor));
                "bitwise"
            }
            Expr::Cmp {
                equal,
                sreg,
                data: d,
            } => {
                a.u32(1, *sreg)
                    .u32(2, if *equal { 0 } else { 1 })
                    .nested(3, &data(d));
                "cmp"
            }
            Expr::Immediate { dreg, data: d } => {
                a.u32(1, *dreg).nested(2, &data(d));
                "immediate"
            }
            Expr::Verdict(verdict) => {
                let mut v = Attrs::new();
                let (code, chain) = match verdict {
                    Verdict::Accept => (NF_ACCEPT, None),
                    Verdict::Drop => (NF_DROP, None),
                    Verdict::Return => (NFT_RETURN, None),
                    Verdict::Jump(c) => (NFT_JUMP, Some(c)),
                    Verdict::Goto(c) => (NFT_GOTO, Some(c)),
                };
                v.u32(NFTA_VERDICT_CODE, code as u32);
                if let Some(chain) = chain {
                    v.str(NFTA_VERDICT_CHAIN, chain);
                }
                let mut d = Attrs::new();
                d.nested(NFTA_DATA_VERDICT, &v);
                a.u32(1, 0).nested(2, &d);
                "immediate"
            }
            Expr::Masq => return ("masq", None),
            Expr::Nat {
                kind,
                family,
                addr,
                proto,
                flags,
            } => {
                a.u32(1, if *kind == NatKind::Dnat { 1 } else { 0 })
                    .u32(2, *family);
                if let Some(r) = addr {
                    a.u32(3, *r);
                }
                if let Some(r) = proto {
                    a.u32(5, *r);
                }
                if *flags != 0 {
                    a.u32(7, *flags);
                }
                "nat"
            }
            Expr::Fib {
                result,
                flags,
                dreg,
            } => {
                a.u32(1, *dreg).u32(2, *result).u32(3, *flags);
                "fib"
            }
            Expr::Ct { key, dreg } => {
                a.u32(2, *key).u32(1, *dreg);
                "ct"
            }
            Expr::Other(_) => return ("counter", None),
        };
        (name, Some(a))
    }

    /// An expression from a dump's `NFTA_LIST_ELEM`; what it does not know becomes
    /// [`Expr::Other`], never an error.
    pub(crate) fn decode(elem: &[u8]) -> Expr {
        let name = find(elem, 1).map(string).unwrap_or_default();
        let d = find(elem, 2).unwrap_or_default();
        let u = |kind: u16| find(d, kind).and_then(be_u32);
        let value = |kind: u16| {
            find(d, kind)
                .and_then(|v| find(v, NFTA_DATA_VALUE))
                .map(<[u8]>::to_vec)
        };
        let decoded = match name.as_str() {
            "meta" => Some(Expr::Meta {
                key: u(2).unwrap_or_default(),
                dreg: u(1).unwrap_or_default(),
            }),
            "payload" => Some(Expr::Payload {
                dreg: u(1).unwrap_or_default(),
                base: u(2).unwrap_or_default(),
                offset: u(3).unwrap_or_default(),
                len: u(4).unwrap_or_default(),
            }),
            "bitwise" => Some(Expr::Bitwise {
                reg: u(1).unwrap_or_default(),
                mask: value(4).unwrap_or_default(),
                xor: value(5).unwrap_or_default(),
            }),
            "cmp" => Some(Expr::Cmp {
                sreg: u(1).unwrap_or_default(),
                equal: u(2) == Some(0),
                data: value(3).unwrap_or_default(),
            }),
            "immediate" => decode_immediate(d),
            "masq" => Some(Expr::Masq),
            "nat" => Some(Expr::Nat {
                kind: if u(1) == Some(1) {
                    NatKind::Dnat
                } else {
                    NatKind::Snat
                },
                family: u(2).unwrap_or_default(),
                addr: u(3),
                proto: u(5),
                flags: u(7).unwrap_or_default(),
            }),
            "fib" => Some(Expr::Fib {
                dreg: u(1).unwrap_or_default(),
                result: u(2).unwrap_or_default(),
                flags: u(3).unwrap_or_default(),
            }),
            "ct" => Some(Expr::Ct {
                key: u(2).unwrap_or_default(),
                dreg: u(1).unwrap_or_default(),
            }),
            _ => None,
        };
        decoded.unwrap_or(Expr::Other(name))
    }
}

fn decode_immediate(d: &[u8]) -> Option<Expr> {
    let dreg = find(d, 1).and_then(be_u32)?;
    let data = find(d, 2)?;
    if let Some(verdict) = find(data, NFTA_DATA_VERDICT) {
        let code = find(verdict, NFTA_VERDICT_CODE).and_then(be_u32)? as i32;
        let chain = find(verdict, NFTA_VERDICT_CHAIN).map(string);
        return Some(Expr::Verdict(match (code, chain) {
            (NF_ACCEPT, _) => Verdict::Accept,
            (NF_DROP, _) => Verdict::Drop,
            (NFT_RETURN, _) => Verdict::Return,
            (NFT_JUMP, Some(c)) => Verdict::Jump(c),
            (NFT_GOTO, Some(c)) => Verdict::Goto(c),
            _ => return None,
        }));
    }
    Some(Expr::Immediate {
        dreg,
        data: find(data, NFTA_DATA_VALUE)?.to_vec(),
    })
}

/// The expressions of a rule's `NFTA_RULE_EXPRESSIONS`.
pub(crate) fn decode_list(list: &[u8]) -> Vec<Expr> {
    walk(list)
        .filter(|(kind, _)| *kind == 1)
        .map(|(_, elem)| Expr::decode(elem))
        .collect()
}

/// A rule's `NFTA_RULE_EXPRESSIONS`.
pub(crate) fn encode_list(exprs: &[Expr]) -> Attrs {
    let mut list = Attrs::new();
    for expr in exprs {
        let (name, data) = expr.encode();
        let mut elem = Attrs::new();
        elem.str(1, name);
        if let Some(data) = data {
            elem.nested(2, &data);
        }
        list.nested(1, &elem);
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_expression_reads_back_as_written() {
        let exprs = vec![
            Expr::Meta {
                key: META_NFPROTO,
                dreg: REG1,
            },
            Expr::Payload {
                base: NETWORK_HEADER,
                offset: 16,
                len: 4,
                dreg: REG1,
            },
            Expr::Bitwise {
                reg: REG1,
                mask: vec![0xf0, 0, 0, 0],
                xor: vec![0; 4],
            },
            Expr::Cmp {
                equal: false,
                sreg: REG1,
                data: vec![10, 88, 0, 0],
            },
            Expr::Immediate {
                dreg: REG2,
                data: vec![0, 80],
            },
            Expr::Verdict(Verdict::Goto("masq_checks".into())),
            Expr::Verdict(Verdict::Return),
            Expr::Verdict(Verdict::Drop),
            Expr::Masq,
            Expr::Nat {
                kind: NatKind::Dnat,
                family: 2,
                addr: Some(REG1),
                proto: Some(REG2),
                flags: 2,
            },
            Expr::Fib {
                result: FIB_RESULT_ADDRTYPE,
                flags: FIB_F_DADDR,
                dreg: REG1,
            },
        ];
        let list = encode_list(&exprs);
        assert_eq!(decode_list(&list.0), exprs);
    }
}
