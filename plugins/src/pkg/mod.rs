//! What plugins share (upstream's `pkg/`): IPAM delegation, rollback of a failed
//! ADD, the container link helpers and the CHECK of addresses and routes, the
//! masquerade glue of bridge and ptp, and state files.

pub use cni_skel::files;
pub mod child;
mod ipam;
mod link;
mod masq;
mod rollback;
mod state;
#[cfg(test)]
pub mod testing;

pub use ipam::{ipam_add, ipam_verb};
pub use link::{
    ContainerLink, Found, check_addresses_and_routes, check_container_link, container_mac,
    container_mac_or, mtu, prev_addresses,
};
pub use masq::{
    del_beside_masq, gc_ipam_and_masq, masq_backend, masq_owner, setup_masq, teardown_masq,
};
pub use rollback::Rollback;
pub use state::{remove_state, save_state};
