//! The runtime side of CNI, as upstream's `libcni`: load network configurations, run
//! their plugins for ADD, CHECK, DEL, GC and STATUS, probe plugin versions, and keep
//! the results cache, all compatible with upstream's files and plugins.
//!
//! ```no_run
//! use libcni::{CniConfig, RuntimeConf, conf};
//!
//! # fn main() -> Result<(), libcni::Error> {
//! let list = conf::load_network_conf("/etc/cni/net.d".as_ref(), "mynet")?;
//! let cni = CniConfig::new(["/opt/cni/bin"])
//!     .with_timeout(std::time::Duration::from_secs(30));
//! let rt = RuntimeConf {
//!     container_id: "c1".into(),
//!     netns: "/run/netns/c1".into(),
//!     ifname: "eth0".into(),
//!     ..Default::default()
//! };
//! let result = cni.add_network_list(&list, &rt)?;
//! println!("{}", result.to_json_pretty());
//! cni.check_network_list(&list, &rt)?;
//! cni.del_network_list(&list, &rt)?;
//! # Ok(())
//! # }
//! ```
//!
//! Every call blocks until its plugins are done. In a tokio runtime, move a clone of
//! the (cheap, `Send + Sync`) [`CniConfig`] into `spawn_blocking`:
//!
//! ```no_run
//! # async fn attach(
//! #     cni: &libcni::CniConfig, list: libcni::NetConfList, rt: libcni::RuntimeConf,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! let cni = cni.clone();
//! let result = tokio::task::spawn_blocking(move || cni.add_network_list(&list, &rt)).await??;
//! # Ok(())
//! # }
//! ```
//!
//! A plugin's error keeps its CNI code under upstream's context prefixes:
//!
//! ```no_run
//! # let (cni, list) = (libcni::CniConfig::new(["/opt/cni/bin"]), cni_types::config::NetConfList::default());
//! match cni.get_status_network_list(&list) {
//!     Ok(()) => println!("ready"),
//!     Err(e) if e.code() == Some(cni_types::code::PLUGIN_NOT_AVAILABLE) => println!("not ready: {e}"),
//!     Err(e) => println!("error: {e}"),
//! }
//! ```

#![warn(missing_docs)]

mod api;
pub mod cache;
pub mod conf;
mod error;

pub use api::{CniConfig, DEFAULT_CACHE_DIR, GcArgs, NetworkAttachment, RuntimeConf};
pub use cni_types::config::{GcAttachment, NetConfList, PluginConf};
pub use cni_types::result::Result as CniResult;
pub use error::Error;

/// Finds a plugin binary in `paths` as upstream does: the first regular file named
/// `plugin_type`; a name with a `/` is refused.
pub fn find_plugin(plugin_type: &str, paths: &[String]) -> Result<std::path::PathBuf, String> {
    cni_skel::invoke::find_in_path(plugin_type, paths)
}

#[cfg(test)]
mod tests {
    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync + Clone + 'static>() {}
        send_sync::<super::CniConfig>();
        send_sync::<super::Error>();
    }
}
