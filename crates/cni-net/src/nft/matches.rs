//! The matches and statements of our rule shapes as expressions, exactly as `nft`
//! compiles the same text (`reference/nftables.md` §6): in an `inet` table an
//! address match is preceded by `meta nfproto`; a byte-aligned prefix loads only its
//! bytes, any other prefix loads the whole field and masks it.

use std::net::IpAddr;

use ipnet::IpNet;

use super::expr::{
    CT_STATE, CT_STATE_ESTABLISHED, CT_STATE_RELATED, Expr, FIB_F_DADDR, FIB_RESULT_ADDRTYPE,
    LINK_HEADER, META_IIFNAME, META_L4PROTO, META_NFPROTO, META_OIFNAME, NETWORK_HEADER, NatKind,
    REG1, REG2, RTN_LOCAL, TRANSPORT_HEADER, Verdict,
};

const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

/// Which address of the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Saddr,
    Daddr,
}

fn bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// `meta nfproto ipv4|ipv6` (the family test of an `inet` table).
pub fn nfproto(v6: bool) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: META_NFPROTO,
            dreg: REG1,
        },
        Expr::Cmp {
            equal: true,
            sreg: REG1,
            data: vec![if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 }],
        },
    ]
}

/// `ip|ip6 saddr|daddr [!=] NET` (a host address for a full-length prefix).
pub fn address(field: Field, net: IpNet, equal: bool) -> Vec<Expr> {
    let v6 = net.addr().is_ipv6();
    let full = if v6 { 16 } else { 4 };
    let offset = match (v6, field) {
        (false, Field::Saddr) => 12,
        (false, Field::Daddr) => 16,
        (true, Field::Saddr) => 8,
        (true, Field::Daddr) => 24,
    };
    let network = bytes(net.network());
    let prefix = net.prefix_len() as usize;
    if prefix > 0 && prefix.is_multiple_of(8) {
        let len = prefix / 8;
        return vec![
            Expr::Payload {
                base: NETWORK_HEADER,
                offset,
                len: len as u32,
                dreg: REG1,
            },
            Expr::Cmp {
                equal,
                sreg: REG1,
                data: network[..len].to_vec(),
            },
        ];
    }
    let mask = bytes(net.netmask());
    vec![
        Expr::Payload {
            base: NETWORK_HEADER,
            offset,
            len: full,
            dreg: REG1,
        },
        Expr::Bitwise {
            reg: REG1,
            mask,
            xor: vec![0; full as usize],
        },
        Expr::Cmp {
            equal,
            sreg: REG1,
            data: network,
        },
    ]
}

/// `tcp|udp|sctp dport PORT` (`meta l4proto` first, as `nft` does for a dport match
/// outside a `tcp`-specific context).
pub fn dport(protocol: u8, port: u16) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: META_L4PROTO,
            dreg: REG1,
        },
        Expr::Cmp {
            equal: true,
            sreg: REG1,
            data: vec![protocol],
        },
        Expr::Payload {
            base: TRANSPORT_HEADER,
            offset: 2,
            len: 2,
            dreg: REG1,
        },
        Expr::Cmp {
            equal: true,
            sreg: REG1,
            data: port.to_be_bytes().to_vec(),
        },
    ]
}

/// `iifname "NAME"`.
pub fn iifname(name: &str) -> Vec<Expr> {
    ifname(META_IIFNAME, name, true)
}

/// `iifname|oifname [!=] "NAME"`: `output` picks `oifname`.
pub fn interface(output: bool, name: &str, equal: bool) -> Vec<Expr> {
    ifname(
        if output { META_OIFNAME } else { META_IIFNAME },
        name,
        equal,
    )
}

fn ifname(key: u32, name: &str, equal: bool) -> Vec<Expr> {
    let mut data = vec![0u8; 16];
    let len = name.len().min(16);
    data[..len].copy_from_slice(&name.as_bytes()[..len]);
    vec![
        Expr::Meta { key, dreg: REG1 },
        Expr::Cmp {
            equal,
            sreg: REG1,
            data,
        },
    ]
}

/// `ct state established,related`.
pub fn ct_established_or_related() -> Vec<Expr> {
    let bits = CT_STATE_ESTABLISHED | CT_STATE_RELATED;
    vec![
        Expr::Ct {
            key: CT_STATE,
            dreg: REG1,
        },
        Expr::Bitwise {
            reg: REG1,
            mask: bits.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            equal: false,
            sreg: REG1,
            data: vec![0; 4],
        },
    ]
}

/// `ether saddr MAC` (bridge family).
pub fn ether_saddr(mac: [u8; 6]) -> Vec<Expr> {
    vec![
        Expr::Payload {
            base: LINK_HEADER,
            offset: 6,
            len: 6,
            dreg: REG1,
        },
        Expr::Cmp {
            equal: true,
            sreg: REG1,
            data: mac.to_vec(),
        },
    ]
}

/// `fib daddr type local`.
pub fn fib_daddr_local() -> Vec<Expr> {
    vec![
        Expr::Fib {
            result: FIB_RESULT_ADDRTYPE,
            flags: FIB_F_DADDR,
            dreg: REG1,
        },
        Expr::Cmp {
            equal: true,
            sreg: REG1,
            data: RTN_LOCAL.to_ne_bytes().to_vec(),
        },
    ]
}

/// `dnat to ADDR:PORT`.
pub fn dnat(to: IpAddr, port: u16) -> Vec<Expr> {
    vec![
        Expr::Immediate {
            dreg: REG1,
            data: bytes(to),
        },
        Expr::Immediate {
            dreg: REG2,
            data: port.to_be_bytes().to_vec(),
        },
        Expr::Nat {
            kind: NatKind::Dnat,
            family: if to.is_ipv6() { 10 } else { 2 },
            addr: Some(REG1),
            proto: Some(REG2),
            // NF_NAT_RANGE_PROTO_SPECIFIED
            flags: 2,
        },
    ]
}

pub fn verdict(verdict: Verdict) -> Expr {
    Expr::Verdict(verdict)
}
