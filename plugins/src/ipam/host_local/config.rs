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
    name: String,
    #[serde(rename = "cniVersion")]
    cni_version: String,
    ipam: Option<RawIpam>,
    args: Option<RawArgs>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: Option<RawRuntimeConfig>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<GcAttachment>>,
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
        let version = cni_types::version::or_default(&raw.cni_version);
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
            name: raw.name,
            data_dir: if ipam.data_dir.is_empty() {
                DEFAULT_DATA_DIR.to_string()
            } else {
                ipam.data_dir
            },
            resolv_conf: ipam.resolv_conf,
            routes: ipam.routes,
            ranges,
            requested_ips: requested,
            valid_attachments: raw.valid_attachments.unwrap_or_default(),
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
    Ok(Range {
        subnet,
        start: parse(&raw.range_start, "RangeStart")?.unwrap_or(first),
        end: parse(&raw.range_end, "RangeEnd")?.unwrap_or(last),
        gateway,
    })
}

/// `resolv.conf` as upstream reads it: `nameserver` (appended), `domain`, `search`
/// and `options` (all fields); `#` and `;` start comments.
pub fn parse_resolv_conf(path: &str) -> Result<Dns, Error> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::internal(format!("open {path}: {e}")))?;
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
