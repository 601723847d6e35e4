//! `cnitool list`: the networks a runtime would find, in the order it looks at them,
//! each plugin with where it was found and the versions it supports.

use std::path::Path;

use libcni::CniConfig;

pub fn print(cni: &CniConfig, dir: &Path) -> Result<(), libcni::Error> {
    let networks = libcni::conf::load_all(dir)?;
    if networks.is_empty() {
        println!("no networks in {}", dir.display());
        return Ok(());
    }
    for (file, list) in networks {
        let version = cni_types::version::or_default(&list.cni_version);
        println!(
            "{} (cniVersion {version}) from {}",
            list.name,
            file.display()
        );
        for plugin in &list.plugins {
            let found = libcni::find_plugin(&plugin.plugin_type, cni.paths());
            let versions = match (&found, cni.get_version_info(&plugin.plugin_type)) {
                (Err(e), _) => format!("not usable: {e}"),
                (Ok(_), Err(e)) => format!("VERSION failed: {e}"),
                (Ok(_), Ok(info)) => {
                    let supported = info.supported_versions.join(", ");
                    if info.supported_versions.iter().any(|v| v == version) {
                        format!("supports {supported}")
                    } else {
                        format!("supports {supported}; NOT {version}")
                    }
                }
            };
            let location = found.map(|p| p.display().to_string()).unwrap_or_default();
            println!("  {:<14} {location}  {versions}", plugin.plugin_type);
        }
    }
    Ok(())
}
