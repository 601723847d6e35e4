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

    /// Deletes link `name` of `netns` if the ADD fails: for a link just created in
    /// another namespace, before its index is known (the lookup may be what fails).
    pub fn push_link_removal_by_name(
        &mut self,
        kernel: &'a Kernel,
        netns: &'a NetNs,
        name: &'a str,
    ) {
        self.push(move || {
            if let Ok(mut netlink) = kernel.netlink(netns)
                && let Ok(Some(link)) = netlink.link_by_name(name)
            {
                let _ = netlink.delete_link(link.index);
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
