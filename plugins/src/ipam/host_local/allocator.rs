//! Round-robin allocation over a range set, as upstream's `IPAllocator`: start after
//! `last_reserved_ip.<i>` when that address is in the set (else at the first range's
//! start), walk each range to its end and wrap into the next, skip gateways, and give
//! up after one full lap.

use std::net::IpAddr;

use cni_types::net::IpNet;
use cni_types::result::v100;

use super::config::{RangeSet, address, number};
use super::store::Store;

pub struct Allocator<'a> {
    set: &'a RangeSet,
    store: &'a Store,
    index: usize,
}

impl<'a> Allocator<'a> {
    pub fn new(set: &'a RangeSet, store: &'a Store, index: usize) -> Self {
        Allocator { set, store, index }
    }

    /// Reserves an address for the attachment: `requested` if given, else the next
    /// free one. The caller holds the store's lock.
    pub fn get(
        &self,
        container_id: &str,
        ifname: &str,
        requested: Option<IpAddr>,
    ) -> Result<v100::IpConfig, String> {
        if let Some(ip) = requested {
            let range = self
                .set
                .0
                .iter()
                .find(|r| r.contains(&ip))
                .ok_or_else(|| format!("{ip} not in range set {}", self.set))?;
            if ip == range.gateway {
                return Err(format!("requested ip {ip} is subnet's gateway"));
            }
            if !self
                .store
                .reserve(container_id, ifname, &ip, self.index)
                .map_err(|e| e.msg)?
            {
                return Err(format!(
                    "requested IP address {ip} is not available in range set {}",
                    self.set
                ));
            }
            return Ok(ip_config(ip, range.subnet, range.gateway));
        }
        for (held, _) in self.store.find(container_id, ifname).map_err(|e| e.msg)? {
            if self.set.contains(&held) {
                return Err(format!(
                    "{held} has been allocated to {container_id}, duplicate allocation is not allowed"
                ));
            }
        }
        for (range, ip) in self.candidates() {
            let range = &self.set.0[range];
            if self
                .store
                .reserve(container_id, ifname, &ip, self.index)
                .map_err(|e| e.msg)?
            {
                return Ok(ip_config(ip, range.subnet, range.gateway));
            }
        }
        Err(format!(
            "no IP addresses available in range set: {}",
            self.set
        ))
    }

    /// STATUS: whether any address of the set is still free.
    pub fn has_free(&self) -> bool {
        self.candidates()
            .any(|(_, ip)| !self.store.is_reserved(&ip))
    }

    /// Every candidate address once, as (range index, address), in round-robin order.
    fn candidates(&self) -> impl Iterator<Item = (usize, IpAddr)> + '_ {
        let ranges = &self.set.0;
        let last = self.store.last_reserved(self.index);
        // Start right after the last reserved address when it is in this set.
        let (mut range, mut current) = match last.and_then(|ip| {
            ranges
                .iter()
                .position(|r| r.contains(&ip))
                .map(|i| (i, number(&ip)))
        }) {
            Some((i, n)) => (i, Some(n)),
            None => (0, None),
        };
        let mut start: Option<(usize, u128)> = None;
        std::iter::from_fn(move || {
            loop {
                let r = &ranges[range];
                let next = match current {
                    None => number(&r.start),
                    Some(n) if n == number(&r.end) => {
                        range = (range + 1) % ranges.len();
                        number(&ranges[range].start)
                    }
                    Some(n) => n + 1,
                };
                current = Some(next);
                match start {
                    None => start = Some((range, next)),
                    Some(s) if s == (range, next) => return None,
                    Some(_) => {}
                }
                let r = &ranges[range];
                let ip = address(next, &r.start);
                if ip != r.gateway {
                    return Some((range, ip));
                }
            }
        })
    }
}

fn ip_config(ip: IpAddr, subnet: IpNet, gateway: IpAddr) -> v100::IpConfig {
    v100::IpConfig {
        interface: None,
        address: IpNet::new(ip, subnet.prefix_len()).unwrap_or(subnet),
        gateway: Some(gateway),
    }
}
