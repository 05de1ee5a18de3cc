//! Adapter names: the only strings that ever reach an adapter store.
//!
//! A name is what a client writes in the OpenAI `model` field when it means an
//! adapter, and it becomes a directory name (local store) or an object-key
//! prefix (S3-compatible store). It is therefore restricted to a small,
//! path-safe alphabet: ASCII letters, digits, `_`, `-` and `.`; 1 to 128
//! characters; it must start with a letter or digit and may not contain `..`.
//! A 64-hex-character [`AdapterId`] (the ledger's content hash of an adapter)
//! is always a valid name. Everything else — `../x`, `/etc/passwd`, `a/b`,
//! `C:\x`, NUL bytes, whitespace, empty — is refused before any I/O happens.

use std::fmt;
use std::str::FromStr;

use trib_types::AdapterId;

/// The longest accepted adapter name, in bytes.
pub const MAX_ADAPTER_NAME_LEN: usize = 128;

/// A validated adapter name (see the module docs for the rules).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdapterName(String);

/// Why a string is not a valid adapter name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid adapter id {input:?}: {reason}")]
pub struct AdapterNameError {
    /// The rejected input, truncated to 80 characters.
    pub input: String,
    /// Which rule it broke.
    pub reason: &'static str,
}

impl AdapterName {
    /// Validates `s` as an adapter name.
    pub fn parse(s: &str) -> Result<Self, AdapterNameError> {
        let err = |reason| AdapterNameError {
            input: s.chars().take(80).collect(),
            reason,
        };
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        if s.len() > MAX_ADAPTER_NAME_LEN {
            return Err(err("it is longer than 128 bytes"));
        }
        if s.contains("..") {
            return Err(err("it contains `..` (path traversal is not allowed)"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(match c {
                '/' | '\\' => err("it contains a path separator"),
                _ => err("only ASCII letters, digits, `_`, `-` and `.` are allowed"),
            });
        }
        if !s.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(err("it must start with a letter or a digit"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<AdapterId> for AdapterName {
    fn from(id: AdapterId) -> Self {
        // 64 lowercase hex characters: always valid.
        Self(id.hash().to_hex())
    }
}

impl FromStr for AdapterName {
    type Err = AdapterNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for AdapterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AdapterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdapterName({})", self.0)
    }
}

impl AsRef<str> for AdapterName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use trib_types::Hash;

    #[test]
    fn ordinary_names_and_hashes_are_accepted() {
        for ok in ["sql-helper", "legal_v2", "a", "model.v1.2", "A9"] {
            assert_eq!(AdapterName::parse(ok).unwrap().as_str(), ok);
        }
        let id = AdapterId::from(Hash::of(b"adapter"));
        let name = AdapterName::from(id);
        assert_eq!(AdapterName::parse(name.as_str()).unwrap(), name);
    }

    #[test]
    fn traversal_and_separators_are_refused_with_the_rule_named() {
        let e = AdapterName::parse("../x").unwrap_err();
        assert!(e.to_string().contains("path traversal"), "{e}");
        assert!(AdapterName::parse("a/b")
            .unwrap_err()
            .reason
            .contains("separator"));
        assert!(AdapterName::parse("a\\b")
            .unwrap_err()
            .reason
            .contains("separator"));
        assert!(AdapterName::parse("/etc/passwd").is_err());
        assert!(AdapterName::parse(".hidden")
            .unwrap_err()
            .reason
            .contains("start"));
        assert!(AdapterName::parse("").unwrap_err().reason.contains("empty"));
        assert!(AdapterName::parse("a b").is_err());
        assert!(AdapterName::parse("a\0b").is_err());
        assert!(AdapterName::parse(&"x".repeat(129)).is_err());
        assert!(AdapterName::parse("é").is_err());
    }

    proptest! {
        #[test]
        fn an_accepted_name_is_a_single_safe_path_component(s in "\\PC{0,40}") {
            if let Ok(n) = AdapterName::parse(&s) {
                let p = std::path::Path::new(n.as_str());
                let comps: Vec<_> = p.components().collect();
                prop_assert_eq!(comps.len(), 1);
                let is_normal = matches!(comps[0], std::path::Component::Normal(_));
                prop_assert!(is_normal);
            }
        }
    }
}
