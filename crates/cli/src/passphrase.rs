//! Getting key passphrases without ever echoing or printing them: from an
//! environment variable named by `--passphrase-env`, or an interactive prompt
//! when stdin is a terminal.

use std::io::IsTerminal;

use anyhow::{bail, Context};
use clap::Args;
use zeroize::Zeroizing;

/// Where a passphrase comes from.
#[derive(Args, Clone, Debug, Default)]
pub struct PassphraseArgs {
    /// Read the key passphrase from this environment variable (otherwise a
    /// prompt, when stdin is a terminal).
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
}

impl PassphraseArgs {
    fn env_passphrase(&self) -> anyhow::Result<Option<Zeroizing<String>>> {
        match &self.passphrase_env {
            None => Ok(None),
            Some(var) => {
                let v = std::env::var(var).with_context(|| {
                    format!("--passphrase-env {var}: environment variable {var} is not set")
                })?;
                Ok(Some(Zeroizing::new(v)))
            }
        }
    }

    /// A passphrase for a new key: the env var, or a prompt asked twice.
    pub fn for_new_key(&self, name: &str) -> anyhow::Result<Zeroizing<String>> {
        if let Some(p) = self.env_passphrase()? {
            return Ok(p);
        }
        if !std::io::stdin().is_terminal() {
            bail!("--encrypt needs a passphrase: pass --passphrase-env VAR or run in a terminal");
        }
        let a = Zeroizing::new(rpassword::prompt_password(format!(
            "passphrase for new key {name:?}: "
        ))?);
        let b = Zeroizing::new(rpassword::prompt_password("repeat passphrase: ")?);
        if *a != *b {
            bail!("the two passphrases differ; key not created");
        }
        Ok(a)
    }

    /// A passphrase to unlock an existing encrypted key.
    pub fn for_existing_key(&self, name: &str) -> anyhow::Result<Zeroizing<String>> {
        if let Some(p) = self.env_passphrase()? {
            return Ok(p);
        }
        if !std::io::stdin().is_terminal() {
            bail!("key {name:?} is encrypted: pass --passphrase-env VAR or run in a terminal");
        }
        Ok(Zeroizing::new(rpassword::prompt_password(format!(
            "passphrase for key {name:?}: "
        ))?))
    }

    /// Loads key `name` from the home's keystore, asking for a passphrase
    /// only if the key is encrypted.
    pub fn load_key(
        &self,
        ks: &trib_node::Keystore,
        name: &str,
    ) -> anyhow::Result<trib_node::types::SecretKey> {
        let info = ks.info(name)?;
        if info.encrypted {
            let pass = self.for_existing_key(name)?;
            Ok(ks.load(name, Some(&pass))?)
        } else {
            Ok(ks.load(name, None)?)
        }
    }
}
