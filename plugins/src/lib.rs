//! The CNI reference plugins, one module per plugin, and the table the multicall
//! binary dispatches on.

// `main` as in upstream's plugins/main (the interface-creating plugins), not a binary.
#![allow(special_module_name)]

pub mod ipam;
pub mod main;
pub mod meta;
pub mod pkg;

use cni_skel::Dispatch;

/// Every plugin in this binary, by the name it is installed under.
pub fn plugins() -> Vec<(&'static str, &'static dyn Dispatch)> {
    vec![
        ("bandwidth", &meta::bandwidth::Bandwidth),
        ("bridge", &main::bridge::Bridge),
        ("dummy", &main::dummy::Dummy),
        ("firewall", &meta::firewall::Firewall),
        ("host-device", &main::host_device::HostDevice),
        ("host-local", &ipam::host_local::HostLocal),
        ("ipvlan", &main::ipvlan::Ipvlan),
        ("loopback", &main::loopback::Loopback),
        ("macvlan", &main::macvlan::Macvlan),
        ("portmap", &meta::portmap::Portmap),
        ("ptp", &main::ptp::Ptp),
        ("sbr", &meta::sbr::Sbr),
        ("static", &ipam::static_ipam::Static),
        ("tap", &main::tap::Tap),
        ("tuning", &meta::tuning::TUNING),
        ("vlan", &main::vlan::Vlan),
        ("vrf", &meta::vrf::Vrf),
    ]
}

/// The plugin installed as `name`, if this binary has it.
pub fn plugin(name: &str) -> Option<&'static dyn Dispatch> {
    plugins()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| p)
}
