//! IPAM delegation through the delegate the plugin's caller gave (spec "Delegated
//! plugins"): exec, in-process, or a test's stand-in.

use cni_skel::{CmdArgs, Command, Context};
use cni_types::Error;
use cni_types::result::v100;

/// IPAM ADD through the caller's delegate, as a current-version result.
pub fn ipam_add(cx: &Context, plugin_type: &str, args: &CmdArgs) -> Result<v100::Result, Error> {
    cx.delegate
        .add(plugin_type, args)?
        .to_current()
        .map_err(|e| Error::internal(e.to_string()))
}

pub fn ipam_verb(
    cx: &Context,
    plugin_type: &str,
    command: Command,
    args: &CmdArgs,
) -> Result<(), Error> {
    cx.delegate.verb(plugin_type, command, args)
}
