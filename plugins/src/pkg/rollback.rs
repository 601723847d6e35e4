//! Rollback of a failed ADD.

use cni_net::{Kernel, NetNs};

/// Undo work of a failing ADD: each registered step runs, in reverse order, when
/// the guard is dropped without [`Rollback::done`] (upstream only releases the IPAM
/// address; this also removes the veth and the firewall rules).
#[derive(Default)]
pub struct Rollback<'a> {
    steps: Vec<Box<dyn FnOnce() + 'a>>,
}

impl<'a> Rollback<'a> {
    pub fn push(&mut self, step: impl FnOnce() + 'a) {
        self.steps.push(Box::new(step));
    }

    /// Deletes link `index` of `netns` (a veth takes its peer along) if the ADD fails.
    pub fn push_link_removal(&mut self, kernel: &'a Kernel, netns: &'a NetNs, index: u32) {
        self.push(move || {
            if let Ok(mut netlink) = kernel.netlink(netns) {
                let _ = netlink.delete_link(index);
            }
        });
    }

    pub fn done(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        while let Some(step) = self.steps.pop() {
            step();
        }
    }
}
