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
