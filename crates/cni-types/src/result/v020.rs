//! Results of spec 0.1.0 and 0.2.0: one `ip4` and one `ip6` block.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::common::{Dns, Route};
use crate::net::{IpNet, cidr, opt_ip};

/// The versions this family serves (`""` means 0.1.0).
pub const VERSIONS: [&str; 2] = ["0.1.0", "0.2.0"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Result {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip4: Option<IpConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<IpConfig>,
    /// Always written, even when empty (Go's `omitempty` never omits a struct).
    #[serde(default)]
    pub dns: Dns,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    #[serde(with = "cidr")]
    pub ip: IpNet,
    #[serde(default, with = "opt_ip", skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}
