//! Plugin results in the three families of the spec, and conversion between every pair
//! of versions (spec "Version considerations"; upstream `pkg/types/{020,040,100}`).
//!
//! | family | versions | shape |
//! |---|---|---|
//! | [`v020`] | 0.1.0, 0.2.0 | `ip4`, `ip6`, `dns` (always written) |
//! | [`v040`] | 0.3.0, 0.3.1, 0.4.0 | `interfaces`, `ips[].version`, `routes`, `dns` (always written) |
//! | [`v100`] | 1.0.0, 1.1.0 | no `ips[].version`, interface `mtu`/`socketPath`/`pciID`, empty `dns` omitted, keys sorted |

mod common;
pub mod v020;
pub mod v040;
pub mod v100;

pub use common::{Dns, Route};
use serde_json::Value;

use crate::net::is_ipv4;

/// Why a result could not be read or converted. The texts are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    #[error("unsupported CNI result version {0:?}")]
    UnsupportedVersion(String),
    #[error("result type supports [{}] but unmarshalled CNIVersion is {:?}", .0.join(" "), .1)]
    FamilyMismatch(Vec<&'static str>, String),
    #[error("no converter for CNI result version {0} to {1}")]
    NoConverter(String, String),
    #[error("cannot convert: no valid IP addresses")]
    NoValidIps,
    #[error("decoding version from network config: {0}")]
    DecodeVersion(String),
    #[error("failed to unmarshal raw result: {0}")]
    Json(String),
}

/// A result of any spec version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Result {
    V020(v020::Result),
    V040(v040::Result),
    V100(v100::Result),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V020,
    V040,
    V100,
}

fn family_of(version: &str) -> Option<Family> {
    let version = crate::version::or_default(version);
    if v020::VERSIONS.contains(&version) {
        Some(Family::V020)
    } else if v040::VERSIONS.contains(&version) {
        Some(Family::V040)
    } else if v100::VERSIONS.contains(&version) {
        Some(Family::V100)
    } else {
        None
    }
}

impl Result {
    /// Reads a result whose family is chosen by its own `cniVersion`
    /// (upstream `create.CreateFromBytes`).
    pub fn from_slice(bytes: &[u8]) -> std::result::Result<Result, ResultError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ResultError::DecodeVersion(e.to_string()))?;
        let version = value
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Result::from_value_as(&version, value)
    }

    /// Reads a result as the family of `version`; the result's own `cniVersion` must
    /// belong to that family (upstream `create.Create`).
    pub fn from_value_as(version: &str, value: Value) -> std::result::Result<Result, ResultError> {
        let family = family_of(version)
            .ok_or_else(|| ResultError::UnsupportedVersion(version.to_string()))?;
        let json = |e: serde_json::Error| ResultError::Json(e.to_string());
        let result = match family {
            Family::V020 => Result::V020(crate::gojson::from_value(value).map_err(json)?),
            Family::V040 => Result::V040(crate::gojson::from_value(value).map_err(json)?),
            Family::V100 => Result::V100(crate::gojson::from_value(value).map_err(json)?),
        };
        let own = result.version();
        let accepted: Vec<&'static str> = match family {
            Family::V020 => v020::VERSIONS.to_vec(),
            Family::V040 => v040::VERSIONS.to_vec(),
            Family::V100 => v100::VERSIONS.to_vec(),
        };
        let own_ok = accepted.contains(&own) || (family == Family::V020 && own.is_empty());
        if !own_ok {
            return Err(ResultError::FamilyMismatch(accepted, own.to_string()));
        }
        Ok(result)
    }

    /// The result's own `cniVersion` (may be empty for a hand-built result).
    pub fn version(&self) -> &str {
        match self {
            Result::V020(r) => &r.cni_version,
            Result::V040(r) => &r.cni_version,
            Result::V100(r) => &r.cni_version,
        }
    }

    /// Converts to `to` (empty means 0.1.0). Up-conversions leave new fields empty;
    /// down-conversions to 0.1.0/0.2.0 are lossy and fail when there is no IP address.
    pub fn convert(&self, to: &str) -> std::result::Result<Result, ResultError> {
        let to = crate::version::or_default(to);
        let from = match self.version() {
            // Upstream stamps the family's newest version on an unversioned result.
            "" => match self {
                Result::V020(_) => "0.2.0",
                Result::V040(_) => "0.4.0",
                Result::V100(_) => "1.1.0",
            },
            v => v,
        };
        let no_converter = || ResultError::NoConverter(from.to_string(), to.to_string());
        if family_of(from).is_none() {
            return Err(no_converter());
        }
        let target = family_of(to).ok_or_else(no_converter)?;
        let to = to.to_string();
        Ok(match (self, target) {
            (Result::V020(r), Family::V020) => Result::V020(v020::Result {
                cni_version: to,
                ..r.clone()
            }),
            (Result::V040(r), Family::V040) => Result::V040(v040::Result {
                cni_version: to,
                ..r.clone()
            }),
            // 1.0.0 and 1.1.0 share one shape, as upstream's types100: spec 1.1's
            // interface fields (`mtu`, `socketPath`, `pciID`) stay at 1.0.0 (Go
            // readers ignore them) and go with the conversion to 0.4.0 and older.
            (Result::V100(r), Family::V100) => Result::V100(v100::Result {
                cni_version: to,
                ..r.clone()
            }),
            (Result::V020(r), Family::V040) => Result::V040(v020_to_v040(r, to)),
            (Result::V020(r), Family::V100) => {
                Result::V100(v040_to_v100(&v020_to_v040(r, to.clone()), to))
            }
            (Result::V040(r), Family::V100) => Result::V100(v040_to_v100(r, to)),
            (Result::V040(r), Family::V020) => Result::V020(v040_to_v020(r, to)?),
            (Result::V100(r), Family::V040) => Result::V040(v100_to_v040(r, to)),
            (Result::V100(r), Family::V020) => {
                Result::V020(v040_to_v020(&v100_to_v040(r, to.clone()), to)?)
            }
        })
    }

    /// The result as a JSON value (for `prevResult` and the results cache). 1.x results
    /// have their keys sorted, as upstream marshals them through a map.
    pub fn to_value(&self) -> Value {
        let value = match self {
            Result::V020(r) => serde_json::to_value(r),
            Result::V040(r) => serde_json::to_value(r),
            Result::V100(r) => serde_json::to_value(r),
        };
        value.unwrap_or(Value::Null)
    }

    /// What a plugin prints: 4-space indented, no trailing newline, as upstream.
    pub fn to_json_pretty(&self) -> String {
        match self {
            Result::V020(r) => crate::to_json_pretty(r),
            Result::V040(r) => crate::to_json_pretty(r),
            // Through a Value: serde_json's map is ordered by key, like Go's.
            Result::V100(_) => crate::to_json_pretty(&self.to_value()),
        }
    }

    /// The result as the newest family (used by plugins that read a prevResult).
    pub fn to_current(&self) -> std::result::Result<v100::Result, ResultError> {
        match self.convert(crate::version::CURRENT)? {
            Result::V100(r) => Ok(r),
            _ => Err(ResultError::NoConverter(
                self.version().into(),
                crate::version::CURRENT.into(),
            )),
        }
    }
}

fn v020_to_v040(r: &v020::Result, to: String) -> v040::Result {
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    for (config, family) in [(&r.ip4, "4"), (&r.ip6, "6")] {
        if let Some(config) = config {
            ips.push(v040::IpConfig {
                version: family.to_string(),
                interface: None,
                address: config.ip,
                gateway: config.gateway,
            });
            routes.extend(config.routes.iter().cloned());
        }
    }
    v040::Result {
        cni_version: to,
        interfaces: Vec::new(),
        ips,
        routes,
        dns: r.dns.clone(),
    }
}

fn v040_to_v100(r: &v040::Result, to: String) -> v100::Result {
    v100::Result {
        cni_version: to,
        interfaces: r
            .interfaces
            .iter()
            .map(|i| v100::Interface {
                name: i.name.clone(),
                mac: i.mac.clone(),
                sandbox: i.sandbox.clone(),
                ..Default::default()
            })
            .collect(),
        ips: r
            .ips
            .iter()
            .map(|ip| v100::IpConfig {
                interface: ip.interface,
                address: ip.address,
                gateway: ip.gateway,
            })
            .collect(),
        routes: r.routes.clone(),
        dns: r.dns.clone(),
    }
}

fn v100_to_v040(r: &v100::Result, to: String) -> v040::Result {
    v040::Result {
        cni_version: to,
        interfaces: r
            .interfaces
            .iter()
            .map(|i| v040::Interface {
                name: i.name.clone(),
                mac: i.mac.clone(),
                sandbox: i.sandbox.clone(),
            })
            .collect(),
        ips: r
            .ips
            .iter()
            .map(|ip| v040::IpConfig {
                version: if is_ipv4(&ip.address.addr()) {
                    "4"
                } else {
                    "6"
                }
                .to_string(),
                interface: ip.interface,
                address: ip.address,
                gateway: ip.gateway,
            })
            .collect(),
        // Upstream keeps the 1.x route extras (mtu, table, ...) here.
        routes: r.routes.clone(),
        dns: r.dns.clone(),
    }
}

/// The lossy conversion to 0.1.0/0.2.0: the first IPv4 and the first IPv6 address, the
/// routes of each family (destination and gateway only), DNS.
fn v040_to_v020(r: &v040::Result, to: String) -> std::result::Result<v020::Result, ResultError> {
    let pick = |family: &str| {
        r.ips
            .iter()
            .find(|ip| ip.version == family)
            .map(|ip| v020::IpConfig {
                ip: ip.address,
                gateway: ip.gateway,
                routes: Vec::new(),
            })
    };
    let mut ip4 = pick("4");
    let mut ip6 = pick("6");
    for route in &r.routes {
        let slot = if is_ipv4(&route.dst.addr()) {
            &mut ip4
        } else {
            &mut ip6
        };
        if let Some(config) = slot {
            config.routes.push(Route::new(route.dst, route.gw));
        }
    }
    if ip4.is_none() && ip6.is_none() {
        return Err(ResultError::NoValidIps);
    }
    Ok(v020::Result {
        cni_version: to,
        ip4,
        ip6,
        dns: r.dns.clone(),
    })
}

/// Parses a `prevResult` as upstream's `version.ParsePrevResult`: the result's own
/// `cniVersion` if it has one, else the config's, read as the config version's family.
pub fn parse_prev_result(
    config_version: &str,
    mut prev: Value,
) -> std::result::Result<Result, String> {
    if let Value::Object(map) = &mut prev {
        let missing = map
            .get("cniVersion")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if missing {
            map.insert(
                "cniVersion".into(),
                Value::String(config_version.to_string()),
            );
        }
    }
    Result::from_value_as(config_version, prev)
        .map_err(|e| format!("could not parse prevResult: {e}"))
}
