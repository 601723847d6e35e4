//! Rollback of a failed ADD.

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
