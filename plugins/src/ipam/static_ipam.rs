//! static: addresses given in the config or the request (upstream
//! `plugins/ipam/static`); no state. `CNI_ARGS` `IP=`/`GATEWAY=` are added to the
//! configured addresses, `args.cni.ips` replaces them, and `runtimeConfig.ips`
//! replaces them again.

use std::net::IpAddr;

use cni_skel::{Context, Plugin, Request};
use cni_types::Error;
use cni_types::net::IpNet;
use cni_types::result::{Dns, Result as CniResult, Route, v100};
use serde::Deserialize;

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
    addresses: Vec<RawAddress>,
    routes: Vec<Route>,
    dns: Dns,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct RawAddress {
    address: String,
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
}

struct Address {
    /// Host bits kept: the address with its subnet's prefix.
    address: IpNet,
    gateway: Option<IpAddr>,
}

struct IpamConf {
    addresses: Vec<Address>,
    routes: Vec<Route>,
    dns: Dns,
}

fn cidr(text: &str, field: &str) -> Result<IpNet, Error> {
    text.trim().parse::<IpNet>().map_err(|_| {
        Error::internal(format!(
            "the '{field}' field is expected to be in CIDR notation, got: '{text}'"
        ))
    })
}

impl IpamConf {
    fn load(args: &Request<RawConf>) -> Result<IpamConf, Error> {
        let raw = args.plugin.clone();
        let ipam = raw
            .ipam
            .ok_or_else(|| Error::internal("IPAM config missing 'ipam' key"))?;
        let mut addresses = Vec::new();
        for (i, a) in ipam.addresses.iter().enumerate() {
            let address = a.address.parse::<IpNet>().map_err(|_| {
                Error::internal(format!(
                    "invalid CIDR {}: invalid CIDR address: {}",
                    a.address, a.address
                ))
            })?;
            let gateway = match a.gateway.as_str() {
                "" => None,
                g => Some(g.parse::<IpAddr>().map_err(|_| {
                    Error::internal(format!("invalid address {i}: invalid gateway {g}"))
                })?),
            };
            addresses.push(Address { address, gateway });
        }
        let env = cni_types::args::load(&args.args, &["IP", "GATEWAY"]).map_err(Error::internal)?;
        if let Some(ips) = env.get("IP").filter(|v| !v.is_empty()) {
            for item in ips.split(',') {
                addresses.push(Address {
                    address: cidr(item, "ip")?,
                    gateway: None,
                });
            }
        }
        if let Some(gateways) = env.get("GATEWAY").filter(|v| !v.is_empty()) {
            for item in gateways.split(',') {
                let gw: IpAddr = item
                    .trim()
                    .parse()
                    .map_err(|_| Error::internal(format!("invalid gateway address: {item}")))?;
                for a in addresses.iter_mut().filter(|a| a.address.contains(&gw)) {
                    a.gateway = Some(gw);
                }
            }
        }
        let from_args = raw
            .args
            .and_then(|a| a.cni)
            .map(|c| c.ips)
            .unwrap_or_default();
        if !from_args.is_empty() {
            addresses = from_args
                .iter()
                .map(|a| {
                    cidr(a, "ip").map(|address| Address {
                        address,
                        gateway: None,
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        let runtime = raw.runtime_config.unwrap_or_default();
        if !runtime.ips.is_empty() {
            addresses = runtime
                .ips
                .iter()
                .map(|a| {
                    cidr(a, "ips").map(|address| Address {
                        address,
                        gateway: None,
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        let v4 = addresses
            .iter()
            .filter(|a| a.address.addr().is_ipv4())
            .count();
        let v6 = addresses.len() - v4;
        let version = &args.cni_version;
        if (v4 > 1 || v6 > 1)
            && !cni_types::version::greater_than_or_equal(version, "0.3.0").unwrap_or(false)
        {
            return Err(Error::internal(format!(
                "CNI version {version} does not support more than 1 address per family"
            )));
        }
        Ok(IpamConf {
            addresses,
            routes: ipam.routes,
            dns: ipam.dns,
        })
    }
}

pub struct Static;

impl Plugin for Static {
    type Conf = RawConf;

    fn name(&self) -> &str {
        "static"
    }

    fn add(&self, args: &Request<RawConf>, _cx: &Context) -> Result<CniResult, Error> {
        let conf = IpamConf::load(args)?;
        Ok(CniResult::V100(v100::Result {
            cni_version: cni_types::version::CURRENT.into(),
            ips: conf
                .addresses
                .iter()
                .map(|a| v100::IpConfig {
                    interface: None,
                    address: a.address,
                    gateway: a.gateway,
                })
                .collect(),
            routes: conf.routes,
            dns: conf.dns,
            ..Default::default()
        }))
    }

    /// Nothing was allocated, so nothing is released.
    fn del(&self, args: &Request<RawConf>, _cx: &Context) -> Result<(), Error> {
        IpamConf::load(args).map(drop)
    }

    fn check(&self, args: &Request<RawConf>, _cx: &Context) -> Result<(), Error> {
        let conf = IpamConf::load(args)?;
        let prev = args.require_prev_result()?;
        for a in &conf.addresses {
            let Some(found) = prev
                .ips
                .iter()
                .find(|ip| ip.address.addr() == a.address.addr())
            else {
                continue;
            };
            if a.gateway.is_some() && found.gateway != a.gateway {
                return Err(Error::internal(format!(
                    "static: Failed to match addr {} on interface {}",
                    a.address, args.ifname
                )));
            }
        }
        Ok(())
    }
}
