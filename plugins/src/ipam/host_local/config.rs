//! host-local's configuration: range sets canonicalised as upstream, requested
//! addresses from `CNI_ARGS`, `args` and `runtimeConfig`, and `resolvConf`.

use std::fmt;
use std::net::IpAddr;

use cni_skel::Request;
use cni_types::Error;
use cni_types::config::GcAttachment;
use cni_types::net::IpNet;
use cni_types::result::{Dns, Route};
use serde::Deserialize;

use crate::ipam::parse_ip_or_cidr;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// host-local's keys as they arrive (the `ipam` section, and the request's `args`
/// and `runtimeConfig` for requested addresses); [`IpamConf::load`] validates them.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RawConf {
    ipam: Option<RawIpam>,
    args: Option<RawArgs>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: Option<RawRuntimeConfig>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct RawIpam {
    subnet: String,
    #[serde(rename = "rangeStart")]
    range_start: String,
    #[serde(rename = "rangeEnd")]
    range_end: String,
    gateway: String,
    ranges: Vec<Vec<RawRange>>,
    routes: Vec<Route>,
    #[serde(rename = "dataDir")]
    data_dir: String,
    #[serde(rename = "resolvConf")]
    resolv_conf: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct RawRange {
    subnet: String,
    #[serde(rename = "rangeStart")]
    range_start: String,
    #[serde(rename = "rangeEnd")]
    range_end: String,
    gateway: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct RawArgs {
    cni: Option<RawCniArgs>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct RawCniArgs {
    ips: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct RawRuntimeConfig {
    ips: Vec<String>,
    #[serde(rename = "ipRanges")]
    ip_ranges: Vec<Vec<RawRange>>,
}

/// One range: addresses `start..=end` of `subnet`, handing out `gateway` never.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

impl Range {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.subnet.contains(ip)
            && number(ip) >= number(&self.start)
            && number(ip) <= number(&self.end)
    }

    fn overlaps(&self, other: &Range) -> bool {
        self.subnet.addr().is_ipv4() == other.subnet.addr().is_ipv4()
            && (self.contains(&other.start)
                || self.contains(&other.end)
                || other.contains(&self.start)
                || other.contains(&self.end))
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// The ranges one address is taken from (one per family, usually).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(ip))
    }

    fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join(","))
    }
}

/// An address as a number, so both families share the arithmetic.
pub fn number(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

/// The address `n` in the family of `like`.
pub fn address(n: u128, like: &IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::from(
            u32::try_from(n & 0xffff_ffff)
                .unwrap_or_default()
                .to_be_bytes(),
        ),
        IpAddr::V6(_) => IpAddr::from(n.to_be_bytes()),
    }
}

/// host-local's configuration after upstream's `LoadIPAMConfig`.
#[derive(Debug)]
pub struct IpamConf {
    pub name: String,
    pub data_dir: String,
    pub resolv_conf: String,
    pub routes: Vec<Route>,
    pub ranges: Vec<RangeSet>,
    /// Requested addresses: `CNI_ARGS` `IP=`, then `args.cni.ips`, then
    /// `runtimeConfig.ips`.
    pub requested_ips: Vec<IpAddr>,
    pub valid_attachments: Vec<GcAttachment>,
}

impl IpamConf {
    pub fn load(args: &Request<RawConf>) -> Result<IpamConf, Error> {
        let raw = args.plugin.clone();
        let ipam = raw
            .ipam
            .ok_or_else(|| Error::internal("IPAM config missing 'ipam' key"))?;
        let mut requested = Vec::new();
        let env = cni_types::args::load(&args.args, &["IP"]).map_err(Error::internal)?;
        if let Some(ip) = env.get("IP") {
            requested.push(parse_ip_or_cidr(ip).ok_or_else(|| {
                Error::internal(format!(
                    "ARGS: error parsing value of pair \"IP={ip}\": invalid IP address: {ip}"
                ))
            })?);
        }
        let runtime = raw.runtime_config.unwrap_or_default();
        let from_args = raw
            .args
            .and_then(|a| a.cni)
            .map(|c| c.ips)
            .unwrap_or_default();
        for text in from_args.iter().chain(&runtime.ips) {
            requested.push(
                parse_ip_or_cidr(text)
                    .ok_or_else(|| Error::internal(format!("invalid IP address: {text}")))?,
            );
        }

        let mut raw_sets = Vec::new();
        if !ipam.subnet.is_empty() {
            raw_sets.push(vec![RawRange {
                subnet: ipam.subnet.clone(),
                range_start: ipam.range_start.clone(),
                range_end: ipam.range_end.clone(),
                gateway: ipam.gateway.clone(),
            }]);
        }
        raw_sets.extend(runtime.ip_ranges);
        raw_sets.extend(ipam.ranges);
        if raw_sets.is_empty() {
            return Err(Error::internal("no IP ranges specified"));
        }
        let mut ranges = Vec::new();
        let (mut v4_sets, mut v6_sets) = (0, 0);
        for (i, raw_set) in raw_sets.iter().enumerate() {
            let set = canonical_set(raw_set)
                .map_err(|e| Error::internal(format!("invalid range set {i}: {e}")))?;
            if set.0[0].subnet.addr().is_ipv4() {
                v4_sets += 1;
            } else {
                v6_sets += 1;
            }
            ranges.push(set);
        }
        let version = args.cni_version.as_str();
        if (v4_sets > 1 || v6_sets > 1)
            && !cni_types::version::greater_than_or_equal(version, "0.3.0").unwrap_or(false)
        {
            return Err(Error::internal(format!(
                "CNI version {version} does not support more than 1 address per family"
            )));
        }
        for i in 0..ranges.len() {
            for j in i + 1..ranges.len() {
                if ranges[i].overlaps(&ranges[j]) {
                    return Err(Error::internal(format!("range set {i} overlaps with {j}")));
                }
            }
        }
        Ok(IpamConf {
            name: args.network().to_string(),
            data_dir: if ipam.data_dir.is_empty() {
                DEFAULT_DATA_DIR.to_string()
            } else {
                ipam.data_dir
            },
            resolv_conf: ipam.resolv_conf,
            routes: ipam.routes,
            ranges,
            requested_ips: requested,
            valid_attachments: args.conf.valid_attachments.clone().unwrap_or_default(),
        })
    }
}

fn canonical_set(raw: &[RawRange]) -> Result<RangeSet, String> {
    if raw.is_empty() {
        return Err("empty range set".into());
    }
    let ranges = raw
        .iter()
        .map(canonical_range)
        .collect::<Result<Vec<_>, _>>()?;
    let v4 = ranges[0].subnet.addr().is_ipv4();
    if ranges.iter().any(|r| r.subnet.addr().is_ipv4() != v4) {
        return Err("mixed address families".into());
    }
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[i + 1..] {
            if a.overlaps(b) {
                return Err(format!("subnets {a} and {b} overlap"));
            }
        }
    }
    Ok(RangeSet(ranges))
}

/// Upstream's `Range.Canonicalize`: defaults and bounds for one range.
fn canonical_range(raw: &RawRange) -> Result<Range, String> {
    let subnet: IpNet = raw
        .subnet
        .parse()
        .map_err(|_| format!("invalid CIDR address: {}", raw.subnet))?;
    let subnet = match subnet {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len().saturating_sub(96))
                .map_err(|e| e.to_string())?,
            None => subnet,
        },
        v4 => v4,
    };
    let bits = if subnet.addr().is_ipv4() { 32 } else { 128 };
    if subnet.prefix_len() > bits - 2 {
        return Err(format!("Network {subnet} too small to allocate from"));
    }
    if subnet.prefix_len() == 0 {
        return Err(format!(
            "Network {subnet} is every address, not a subnet to allocate from"
        ));
    }
    if subnet.addr() != subnet.network() {
        return Err(format!(
            "Network has host bits set. For a subnet mask of length {} the network address is {}",
            subnet.prefix_len(),
            subnet.network()
        ));
    }
    let parse = |text: &str, what: &str| -> Result<Option<IpAddr>, String> {
        if text.is_empty() {
            return Ok(None);
        }
        let ip = crate::ipam::canonical(
            text.parse::<IpAddr>()
                .map_err(|_| format!("invalid IP address: {text}"))?,
        );
        if !subnet.contains(&ip) {
            return Err(format!("{what} {ip} not in network {subnet}"));
        }
        // Never hand out an IPv4 subnet's network or broadcast address.
        if subnet.addr().is_ipv4() && (ip == subnet.network() || ip == subnet.broadcast()) {
            return Err(format!(
                "{what} {ip} is the network or broadcast address of {subnet}"
            ));
        }
        Ok(Some(ip))
    };
    let network = number(&subnet.network());
    let first = address(network + 1, &subnet.addr());
    let last = if subnet.addr().is_ipv4() {
        address(number(&subnet.broadcast()) - 1, &subnet.addr())
    } else {
        subnet.broadcast()
    };
    let gateway = match raw.gateway.as_str() {
        "" => first,
        text => crate::ipam::canonical(
            text.parse::<IpAddr>()
                .map_err(|_| format!("invalid IP address: {text}"))?,
        ),
    };
    if !subnet.contains(&gateway) {
        return Err(format!("gateway {gateway} not in network {subnet}"));
    }
    let start = parse(&raw.range_start, "RangeStart")?.unwrap_or(first);
    let end = parse(&raw.range_end, "RangeEnd")?.unwrap_or(last);
    // Upstream's test, and its text: the end must be in the range that the start
    // opens (an end before the start is "not in network").
    if number(&end) < number(&start) {
        return Err(format!(
            "RangeEnd {end} not in network {subnet} (it is before RangeStart {start})"
        ));
    }
    Ok(Range {
        subnet,
        start,
        end,
        gateway,
    })
}

/// `resolv.conf` as upstream reads it: `nameserver` (appended), `domain`, `search`
/// and `options` (all fields); `#` and `;` start comments.
///
/// Only a regular file of at most 64 KiB is read (a symlink to one is fine, as
/// `/etc/resolv.conf` often is): `/dev/zero` would otherwise grow memory without end.
pub fn parse_resolv_conf(path: &str) -> Result<Dns, Error> {
    const CAP: u64 = 64 * 1024;
    let text = crate::pkg::files::read_regular(std::path::Path::new(path), CAP, true)
        .map_err(|e| Error::internal(format!("open {path}: {e}")))?;
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 2 {
            continue;
        }
        let rest = fields[1..].iter().map(|s| s.to_string());
        match fields[0] {
            "nameserver" => dns.nameservers.push(fields[1].to_string()),
            "domain" => dns.domain = fields[1].to_string(),
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    Ok(dns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(subnet: &str, start: &str, end: &str, gw: &str) -> Result<Range, String> {
        canonical_range(&RawRange {
            subnet: subnet.into(),
            range_start: start.into(),
            range_end: end.into(),
            gateway: gw.into(),
        })
    }

    #[test]
    fn ranges_get_upstreams_defaults() {
        let r = range("10.1.2.0/24", "", "", "").expect("valid");
        assert_eq!(r.to_string(), "10.1.2.1-10.1.2.254");
        assert_eq!(r.gateway.to_string(), "10.1.2.1");
        let r = range("2001:db8::/64", "", "", "").expect("valid");
        assert_eq!(r.to_string(), "2001:db8::1-2001:db8::ffff:ffff:ffff:ffff");
        let r = range("10.1.2.0/24", "10.1.2.10", "10.1.2.20", "10.1.2.254").expect("valid");
        assert_eq!(
            (r.to_string(), r.gateway.to_string()),
            ("10.1.2.10-10.1.2.20".into(), "10.1.2.254".into())
        );
    }

    #[test]
    fn bad_ranges_are_refused_with_upstreams_texts() {
        assert_eq!(
            range("10.1.2.5/24", "", "", "").expect_err("host bits"),
            "Network has host bits set. For a subnet mask of length 24 the network address is 10.1.2.0"
        );
        assert_eq!(
            range("10.1.2.0/31", "", "", "").expect_err("small"),
            "Network 10.1.2.0/31 too small to allocate from"
        );
        assert_eq!(
            range("10.1.2.0/24", "10.1.3.1", "", "").expect_err("outside"),
            "RangeStart 10.1.3.1 not in network 10.1.2.0/24"
        );
        assert_eq!(
            range("10.1.2.0/24", "", "10.1.3.1", "").expect_err("outside"),
            "RangeEnd 10.1.3.1 not in network 10.1.2.0/24"
        );
        let a = RawRange {
            subnet: "10.1.2.0/24".into(),
            ..Default::default()
        };
        let b = RawRange {
            subnet: "2001:db8::/64".into(),
            ..Default::default()
        };
        assert_eq!(
            canonical_set(&[a.clone(), b]).expect_err("mixed"),
            "mixed address families"
        );
        assert_eq!(
            canonical_set(&[a.clone(), a]).expect_err("overlap"),
            "subnets 10.1.2.1-10.1.2.254 and 10.1.2.1-10.1.2.254 overlap"
        );
    }
}

#[cfg(test)]
mod range_properties {
    //! Whatever a config says, a range that is accepted never lets an allocation leave
    //! it: every address handed out until exhaustion is in the subnet, between start
    //! and end, neither the gateway nor (IPv4) the network or broadcast address, and
    //! handed out once.

    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::ipam::host_local::allocator::Allocator;
    use crate::ipam::host_local::store::Store;

    fn v4(n: u32) -> String {
        std::net::Ipv4Addr::from(n).to_string()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64), ..ProptestConfig::default() })]
        #[test]
        fn allocations_never_leave_an_accepted_range(
            base in 0x0a00_0000u32..0x0aff_ff00,
            prefix in 23u8..31,
            start in proptest::option::of(0u32..600),
            end in proptest::option::of(0u32..600),
            gateway in proptest::option::of(0u32..600),
        ) {
            let mask = u32::MAX << (32 - prefix);
            let network = base & mask;
            let raw = RawRange {
                subnet: format!("{}/{prefix}", v4(network)),
                range_start: start.map(|o| v4(network.wrapping_add(o))).unwrap_or_default(),
                range_end: end.map(|o| v4(network.wrapping_add(o))).unwrap_or_default(),
                gateway: gateway.map(|o| v4(network.wrapping_add(o))).unwrap_or_default(),
            };
            let Ok(range) = canonical_range(&raw) else {
                return Ok(());
            };
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path().to_str().unwrap(), "net").unwrap();
            let set = RangeSet(vec![range.clone()]);
            let allocator = Allocator::new(&set, &store, 0);
            let mut seen = BTreeSet::new();
            for i in 0.. {
                let Ok(ip) = allocator.get(&format!("c{i}"), "eth0", None) else {
                    break;
                };
                let ip = ip.address.addr();
                prop_assert!(range.subnet.contains(&ip), "{ip} outside {}", range.subnet);
                prop_assert!(number(&ip) >= number(&range.start) && number(&ip) <= number(&range.end), "{ip} outside {range}");
                prop_assert!(ip != range.gateway && ip != range.subnet.network() && ip != range.subnet.broadcast(), "{ip}");
                prop_assert!(seen.insert(ip), "{ip} twice");
            }
            let size = number(&range.end) - number(&range.start) + 1;
            let gateway_inside = range.contains(&range.gateway) as u128;
            prop_assert_eq!(seen.len() as u128, size - gateway_inside, "every address once: {}", range);
        }
    }

    #[test]
    fn reversed_and_host_less_ranges_are_refused() {
        let range = |subnet: &str, start: &str, end: &str, gateway: &str| {
            canonical_range(&RawRange {
                subnet: subnet.into(),
                range_start: start.into(),
                range_end: end.into(),
                gateway: gateway.into(),
            })
        };
        assert_eq!(
            range("10.1.2.0/24", "10.1.2.200", "10.1.2.100", "").unwrap_err(),
            "RangeEnd 10.1.2.100 not in network 10.1.2.0/24 (it is before RangeStart 10.1.2.200)"
        );
        assert!(range("fd00::/64", "fd00::9", "fd00::2", "").is_err());
        assert_eq!(
            range("10.1.2.0/24", "", "10.1.2.255", "").unwrap_err(),
            "RangeEnd 10.1.2.255 is the network or broadcast address of 10.1.2.0/24"
        );
        assert_eq!(
            range("10.1.2.0/24", "", "", "10.9.9.1").unwrap_err(),
            "gateway 10.9.9.1 not in network 10.1.2.0/24"
        );
        assert!(range("0.0.0.0/0", "", "", "").is_err());
        assert!(range("::/0", "", "", "").is_err());
        assert!(
            range("10.1.2.0/24", "10.1.2.7", "10.1.2.7", "").is_ok(),
            "one address"
        );
    }
}
