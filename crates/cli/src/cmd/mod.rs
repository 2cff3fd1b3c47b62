//! One module per subcommand. Each `run` returns the process exit code.

pub mod bench;
pub mod demo;
pub mod export;
pub mod gateway;
pub mod keygen;
pub mod reindex;
pub mod search;
pub mod send;
pub mod serve;
pub mod sources;
pub mod token;
pub mod top;
pub mod verify;

/// Reads a TOML configuration file, naming it in errors.
pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(p: &std::path::Path) -> anyhow::Result<T> {
    use anyhow::Context;
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}
