//! `trib keys new|list|show`.

use clap::Subcommand;

use crate::passphrase::PassphraseArgs;
use crate::{output, Global};

/// `trib keys` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Generate a new ed25519 key.
    New {
        /// Key name (letters, digits, '-' and '_').
        name: String,
        /// Encrypt the key with a passphrase (Argon2id + XChaCha20-Poly1305).
        #[arg(long)]
        encrypt: bool,
        #[command(flatten)]
        pass: PassphraseArgs,
    },
    /// List the keys (names, addresses; never secrets).
    List,
    /// Show one key's address and public key.
    Show {
        /// Key name.
        name: String,
    },
}

/// Runs `trib keys …`.
pub fn run(g: &Global, c: KeysCommand) -> anyhow::Result<()> {
    let ks = g.home().keystore()?;
    match c {
        KeysCommand::New {
            name,
            encrypt,
            pass,
        } => {
            let passphrase = if encrypt || pass.passphrase_env.is_some() {
                Some(pass.for_new_key(&name)?)
            } else {
                None
            };
            let info = ks.generate(&name, passphrase.as_deref().map(String::as_str))?;
            if g.json {
                return output::json(&info);
            }
            println!(
                "created key {:?}{}",
                info.name,
                if info.encrypted { " (encrypted)" } else { "" }
            );
            println!("  address    {}", info.address);
            println!("  public key {}", info.public_key);
        }
        KeysCommand::List => {
            let keys = ks.list()?;
            if g.json {
                return output::json(&keys);
            }
            if keys.is_empty() {
                println!(
                    "no keys in {} (create one with: trib keys new NAME)",
                    ks.dir().display()
                );
            }
            for k in keys {
                println!(
                    "{:<20} {}{}",
                    k.name,
                    k.address,
                    if k.encrypted { "  (encrypted)" } else { "" }
                );
            }
        }
        KeysCommand::Show { name } => {
            let info = ks.info(&name)?;
            if g.json {
                return output::json(&info);
            }
            println!("name       {}", info.name);
            println!("address    {}", info.address);
            println!("public key {}", info.public_key);
            println!("encrypted  {}", info.encrypted);
        }
    }
    Ok(())
}
