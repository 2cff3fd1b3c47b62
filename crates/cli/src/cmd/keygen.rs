//! `custos keygen`: a new Ed25519 note signer.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// Arguments of `custos keygen`.
#[derive(clap::Args)]
pub struct Args {
    /// The key name, which prefixes every log origin (`NAME/LOG`).
    #[arg(long, default_value = "custos.local")]
    name: String,
    /// Write the private key here (mode 0600). Without it, the private key
    /// is printed to standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<i32> {
    let signer = custos_log::store::generate_signer(&a.name).map_err(anyhow::Error::msg)?;
    match a.out {
        Some(path) => {
            if path.exists() {
                bail!("{} exists; refusing to overwrite a key", path.display());
            }
            custos_log::store::write_secret_file(&path, &format!("{}\n", signer.to_key_string()))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote private key to {}", path.display());
        }
        None => println!("{}", signer.to_key_string()),
    }
    println!("{}", signer.verifier().to_key_string());
    Ok(0)
}
