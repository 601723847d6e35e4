//! Addresses as Go's `net` types marshal them: `IPNet` is `"addr/prefix"` with the host
//! bits kept (`"10.1.2.3/24"`), `IP` is the plain address and an empty string means none.

use std::net::IpAddr;

pub use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serializer};

/// Parses `addr/prefix`, keeping the host bits, as Go's `types.ParseCIDR`.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .map_err(|_| format!("invalid CIDR address: {s}"))
}

/// `true` for IPv4 addresses and IPv4-mapped IPv6 addresses (Go's `To4() != nil`).
pub fn is_ipv4(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    }
}

/// serde for an `IpNet` field in Go's `IPNet` form.
pub mod cidr {
    use super::*;

    pub fn serialize<S: Serializer>(net: &IpNet, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(net)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        let s = String::deserialize(d)?;
        parse_cidr(&s).map_err(serde::de::Error::custom)
    }
}

/// serde for an optional `IpAddr` field in Go's `net.IP` form (`""` means none).
pub mod opt_ip {
    use super::*;

    pub fn serialize<S: Serializer>(ip: &Option<IpAddr>, s: S) -> Result<S::Ok, S::Error> {
        match ip {
            Some(ip) => s.collect_str(ip),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<IpAddr>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("invalid IP address: {s}")))
    }
}
