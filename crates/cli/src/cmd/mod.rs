//! One module per subcommand. Each `run` returns the process exit code.

pub mod bench;
pub mod keygen;
pub mod verify;
