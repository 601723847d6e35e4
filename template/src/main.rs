//! The `sample` binary: the skel reads the `CNI_*` environment and stdin, calls the
//! plugin and prints its result or error, exactly as a runtime expects.

fn main() {
    let kernel = cni_net::Kernel::real();
    // IPAM plugins (if this plugin delegated to one) are executed from CNI_PATH.
    let invoke = cni_skel::Invoke {
        in_process: None,
        kernel: kernel.clone(),
        table_only: false,
    };
    let cx = cni_skel::Context {
        kernel: &kernel,
        delegate: &invoke,
    };
    cni_skel::main(&cni_plugin_template::Sample, &cx);
}
