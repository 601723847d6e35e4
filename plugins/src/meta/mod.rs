//! Chained plugins that adjust what an interface-creating plugin set up
//! (upstream `plugins/meta`).

pub mod bandwidth;
pub mod firewall;
pub mod portmap;
pub mod sbr;
pub mod tuning;
pub mod vrf;
