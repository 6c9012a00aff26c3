//! [`SettingsError`]: a setting that cannot be used, naming it.

/// A setting that cannot be used, naming it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value out of range or inconsistent with another.
    #[error("invalid setting {key}: {message}")]
    Invalid {
        /// The setting, as a TOML key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}
