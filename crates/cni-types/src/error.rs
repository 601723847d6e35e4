//! The CNI error: what a plugin prints on stdout when it fails (spec §5 "Error").

use serde::{Deserialize, Serialize};

/// Well-known error codes (spec §5, plus the library-only codes upstream uses).
pub mod code {
    /// Unknown error (upstream uses it for errors synthesised by the runtime).
    pub const UNKNOWN: u32 = 0;
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_CNI_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid or missing environment variables.
    pub const INVALID_ENVIRONMENT_VARIABLES: u32 = 4;
    /// I/O failure (reading stdin).
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// The netns given is the plugin's own (upstream library code).
    pub const INVALID_NETNS: u32 = 8;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot serve ADD requests.
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, and existing containers may have limited connectivity.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// Any error without a code of its own (upstream skel wraps plain Go errors so).
    pub const INTERNAL: u32 = 999;
}

/// A CNI error. Serialised as upstream does: `{"code","msg","details"?}`; `cniVersion` is
/// accepted on input but upstream's library never writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct Error {
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl Error {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Error {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Error {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// A plugin-logic error without a code of its own (code 999).
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::new(code::INTERNAL, msg)
    }

    /// The JSON a plugin prints: 4-space indented, no trailing newline, as upstream.
    pub fn to_json_pretty(&self) -> String {
        crate::to_json_pretty(self)
    }
}

/// `msg` or `msg; details`, as Go's `types.Error.Error()`.
impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.details.is_empty() {
            f.write_str(&self.msg)
        } else {
            write!(f, "{}; {}", self.msg, self.details)
        }
    }
}

/// `context("...")` on any result whose error becomes a CNI error: the message is
/// prefixed with what was being done, the code is kept (999 for plain errors).
pub trait Context<T> {
    fn context(self, what: impl std::fmt::Display) -> Result<T, Error>;
}

impl<T, E: Into<Error>> Context<T> for Result<T, E> {
    fn context(self, what: impl std::fmt::Display) -> Result<T, Error> {
        self.map_err(|e| {
            let e: Error = e.into();
            Error {
                msg: format!("{what}: {}", e.msg),
                ..e
            }
        })
    }
}

/// Errors collected by a teardown that goes on after a failure (DEL is best effort):
/// every step runs, and the result is the first error's code with every message.
#[derive(Debug, Default)]
pub struct Errors(Vec<Error>);

impl Errors {
    pub fn new() -> Errors {
        Errors::default()
    }

    /// Keeps the error of `result`, if any.
    pub fn record<E: Into<Error>>(&mut self, result: Result<(), E>) {
        if let Err(e) = result {
            self.0.push(e.into());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), Error> {
        let mut errors = self.0.into_iter();
        let Some(first) = errors.next() else {
            return Ok(());
        };
        let rest: Vec<String> = errors.map(|e| e.to_string()).collect();
        if rest.is_empty() {
            return Err(first);
        }
        Err(Error {
            msg: format!("{}; {}", first.msg, rest.join("; ")),
            ..first
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_code_and_errors_collect() {
        let typed: Result<(), Error> = Err(Error::new(7, "bad"));
        let e = typed.context("loading").unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (7, "loading: bad"));
        let mut errors = Errors::new();
        errors.record::<Error>(Ok(()));
        assert!(errors.is_empty());
        errors.record(Err(Error::new(11, "one")));
        errors.record(Err(Error::internal("two")));
        let e = errors.into_result().unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (11, "one; two"));
    }

    #[test]
    fn json_and_display_match_upstream() {
        let e = Error::with_details(1, "incompatible CNI versions", "config is \"9.9.9\"");
        assert_eq!(
            e.to_json_pretty(),
            "{\n    \"code\": 1,\n    \"msg\": \"incompatible CNI versions\",\n    \"details\": \"config is \\\"9.9.9\\\"\"\n}"
        );
        assert_eq!(
            e.to_string(),
            "incompatible CNI versions; config is \"9.9.9\""
        );
        let plain = Error::internal("boom");
        assert_eq!(
            plain.to_json_pretty(),
            "{\n    \"code\": 999,\n    \"msg\": \"boom\"\n}"
        );
        assert_eq!(plain.to_string(), "boom");
    }

    #[test]
    fn parses_errors_with_cni_version() {
        let e: Error =
            serde_json::from_str(r#"{"cniVersion":"1.0.0","code":7,"msg":"bad"}"#).expect("parses");
        assert_eq!(e, Error::new(7, "bad"));
    }
}
