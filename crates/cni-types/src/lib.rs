//! The Container Network Interface specification as Rust data: spec versions, network
//! configurations, results of every version and the conversions between them, the error
//! type with the well-known codes, `CNI_ARGS`, and name validation.
//!
//! This crate does no I/O. Both sides of the protocol use it: plugins (through
//! `cni-skel`) and runtimes (through `libcni`).
//!
//! ```
//! use cni_types::result::Result;
//!
//! let r = Result::from_slice(br#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.2.3/24"}]}"#).unwrap();
//! let old = r.convert("0.2.0").unwrap();
//! assert!(old.to_json_pretty().contains(r#""ip": "10.1.2.3/24""#));
//! ```

pub mod args;
pub mod config;
pub mod error;
pub mod gojson;
pub mod net;
pub mod result;
pub mod validate;
pub mod version;

pub use error::{Context, Error, Errors, code};

/// JSON as upstream prints results and errors: indented by four spaces, no trailing
/// newline (Go `json.MarshalIndent(v, "", "    ")`).
pub fn to_json_pretty<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    if value.serialize(&mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}
