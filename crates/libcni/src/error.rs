//! The one error type of libcni. It keeps the plugin's CNI error (and so its code)
//! reachable under upstream's context prefixes, so a runtime can still ask "was this
//! code 50?" after `plugin type="x" failed (add): ...`.

use std::path::PathBuf;

/// Everything libcni can fail with. `Display` gives upstream's message text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A plugin failed: the error it printed, or one synthesised from how it died
    /// (code 0), or a lookup or validation error with its CNI code.
    #[error("{0}")]
    Plugin(cni_types::Error),
    /// Another error with upstream's context in front of it.
    #[error("{context}: {source}")]
    Context {
        /// What was being done, e.g. `plugin type="bridge" failed (add)`.
        context: String,
        /// What went wrong.
        source: Box<Error>,
    },
    /// A configuration file or list could not be read or parsed.
    #[error("{0}")]
    Config(String),
    /// The directory holds no configuration files at all.
    #[error("no net configurations found in {}", .0.display())]
    NoConfigsFound(PathBuf),
    /// The directory holds configurations, but none with this name.
    #[error("no net configuration with name {name:?} in {}", .dir.display())]
    NotFound {
        /// The network asked for.
        name: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// CHECK was asked of a list whose version predates it (< 0.4.0).
    #[error("configuration version {0:?} does not support the CHECK command")]
    CheckNotSupported(String),
    /// The results cache could not be read or written.
    #[error("{0}")]
    Cache(String),
    /// Validate: every plugin's problem, as upstream prints them: `[e1 e2]`.
    #[error("[{}]", join(.0, " "))]
    Invalid(Vec<Error>),
    /// GC: it goes on after errors and reports them all, one per line.
    #[error("{}", join(.0, "\n"))]
    Several(Vec<Error>),
}

fn join(errors: &[Error], separator: &str) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

impl Error {
    pub(crate) fn context(context: impl Into<String>, source: Error) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// The CNI error a plugin reported, under any context.
    pub fn cni_error(&self) -> Option<&cni_types::Error> {
        match self {
            Error::Plugin(e) => Some(e),
            Error::Context { source, .. } => source.cni_error(),
            _ => None,
        }
    }

    /// The CNI error code a plugin reported (for example 50 from STATUS).
    pub fn code(&self) -> Option<u32> {
        self.cni_error().map(|e| e.code)
    }
}

impl From<cni_types::Error> for Error {
    fn from(e: cni_types::Error) -> Self {
        Error::Plugin(e)
    }
}
