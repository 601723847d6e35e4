//! Main plugins: they create or set up the interface in the container.

pub mod bridge;
pub mod dummy;
pub mod host_device;
pub mod ipvlan;
pub mod loopback;
pub mod macvlan;
pub mod ptp;
pub mod tap;
pub mod vlan;
