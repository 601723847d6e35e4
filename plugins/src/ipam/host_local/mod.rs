//! host-local: a file-backed, per-node address allocator (upstream
//! `plugins/ipam/host-local`). Its directory under `dataDir` is a compatibility
//! surface: Go's host-local and this one can take turns on the same node.
//!
//! - ADD allocates one address per range set (a requested one, or round robin after
//!   `last_reserved_ip.<i>`), all under one lock;
//! - DEL releases by container ID and ifname (or the ID alone, for old files);
//! - CHECK finds the attachment's reservation;
//! - GC (beyond upstream) releases every reservation not in
//!   `cni.dev/valid-attachments`;
//! - STATUS (beyond upstream) is code 50 when a range set has no free address.

mod allocator;
mod config;
mod store;

use cni_skel::{Context, Plugin, Request};
use cni_types::Error;
use cni_types::error::code;
use cni_types::result::{Result as CniResult, v100};

use allocator::Allocator;
use config::{IpamConf, RawConf};
use store::Store;

pub struct HostLocal;

impl Plugin for HostLocal {
    type Conf = RawConf;

    fn name(&self) -> &str {
        "host-local"
    }

    fn add(&self, args: &Request<RawConf>, _cx: &Context) -> Result<CniResult, Error> {
        let conf = IpamConf::load(args)?;
        let mut result = v100::Result {
            cni_version: cni_types::version::CURRENT.into(),
            ..Default::default()
        };
        if !conf.resolv_conf.is_empty() {
            result.dns = config::parse_resolv_conf(&conf.resolv_conf)?;
        }
        let store = Store::open(&conf.data_dir, &conf.name)?;
        let _lock = store.lock()?;
        let mut requested = conf.requested_ips.clone();
        for (index, set) in conf.ranges.iter().enumerate() {
            let wanted = requested
                .iter()
                .position(|ip| set.contains(ip))
                .map(|i| requested.remove(i));
            let allocator = Allocator::new(set, &store, index);
            match allocator.get(&args.container_id, &args.ifname, wanted) {
                Ok(ip) => result.ips.push(ip),
                Err(e) => {
                    release_reserved(&store, &result);
                    return Err(Error::internal(format!(
                        "failed to allocate for range {index}: {e}"
                    )));
                }
            }
        }
        if !requested.is_empty() {
            release_reserved(&store, &result);
            let ips: Vec<String> = requested.iter().map(ToString::to_string).collect();
            return Err(Error::internal(format!(
                "failed to allocate all requested IPs: {}",
                ips.join(" ")
            )));
        }
        result.routes = conf.routes;
        Ok(CniResult::V100(result))
    }

    fn del(&self, args: &Request<RawConf>, _cx: &Context) -> Result<(), Error> {
        let conf = IpamConf::load(args)?;
        let store = Store::open(&conf.data_dir, &conf.name)?;
        let _lock = store.lock()?;
        store.release(&args.container_id, &args.ifname)
    }

    fn check(&self, args: &Request<RawConf>, _cx: &Context) -> Result<(), Error> {
        let conf = IpamConf::load(args)?;
        let store = Store::open(&conf.data_dir, &conf.name)?;
        let _lock = store.lock()?;
        if store.find(&args.container_id, &args.ifname)?.is_empty() {
            return Err(Error::internal(format!(
                "host-local: Failed to find address added by container {}",
                args.container_id
            )));
        }
        Ok(())
    }

    fn status(&self, args: &Request<RawConf>, _cx: &Context) -> Result<(), Error> {
        let conf = IpamConf::load(args)?;
        let store = Store::open(&conf.data_dir, &conf.name)?;
        let _lock = store.lock()?;
        for (index, set) in conf.ranges.iter().enumerate() {
            if !Allocator::new(set, &store, index).has_free() {
                return Err(Error::new(
                    code::PLUGIN_NOT_AVAILABLE,
                    format!("no IP addresses available in range set: {set}"),
                ));
            }
        }
        Ok(())
    }

    fn gc(&self, args: &Request<RawConf>, _cx: &Context) -> Result<(), Error> {
        let conf = IpamConf::load(args)?;
        let store = Store::open(&conf.data_dir, &conf.name)?;
        let _lock = store.lock()?;
        store.release_all_but(&conf.valid_attachments)
    }
}

/// Undoes this call's reservations only: an attachment's earlier ones (the duplicate
/// case) must survive a failed ADD.
fn release_reserved(store: &Store, result: &v100::Result) {
    for ip in &result.ips {
        let _ = store.release_ip(&ip.address.addr());
    }
}
