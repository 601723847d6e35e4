//! IPAM plugins (upstream `plugins/ipam`).

pub mod host_local;
pub mod static_ipam;

use std::net::IpAddr;

use cni_types::net::IpNet;

/// An address as host-local accepts it: `a.b.c.d` or `a.b.c.d/len` (mask ignored),
/// IPv4-mapped IPv6 folded to IPv4.
pub fn parse_ip_or_cidr(text: &str) -> Option<IpAddr> {
    let ip = match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => text.parse::<IpNet>().ok()?.addr(),
    };
    Some(canonical(ip))
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4, as Go's `To4()` sees it.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}
