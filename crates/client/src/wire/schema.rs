//! OpenAPI schemas of the text forms that the wire types carry from the
//! lower crates (`trib_types` addresses, amounts, hashes and ids,
//! `trib_ledger` datanet enums). Those crates know nothing of OpenAPI, so
//! the wire types name these schema-only types in
//! `#[schema(value_type = …)]`; the tests below hold each schema to the
//! real type's serde form.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

fn text(pattern: &str, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

fn one_of(values: &[&str], description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .into()
}

macro_rules! text_schema {
    ($(#[$doc:meta])* $name:ident, $build:expr) => {
        $(#[$doc])*
        pub struct $name;
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $build
            }
        }
        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

/// The pattern of an [`Address`] as the node writes it.
pub const ADDRESS_PATTERN: &str = "^trib[0-9a-f]{40}$";
/// The pattern of an [`Amount`]: base units as a decimal string.
pub const AMOUNT_PATTERN: &str = "^[0-9]{1,39}$";
/// The pattern of a [`Hash`] as the node writes it (a `0x` prefix is also
/// read).
pub const HASH_PATTERN: &str = "^(0x)?[0-9a-f]{64}$";

text_schema!(
    /// An account address: `trib` and 40 lowercase hex digits.
    Address,
    text(
        ADDRESS_PATTERN,
        "An account address: `trib` followed by 40 hex digits."
    )
);
text_schema!(
    /// An amount of OPEN in base units, as a decimal string.
    Amount,
    text(
        AMOUNT_PATTERN,
        "An amount of OPEN in base units (10^-18 OPEN), as a decimal string."
    )
);
text_schema!(
    /// A blake3 hash or a hash-derived id (transaction, block, datanet,
    /// contribution): 64 hex digits.
    Hash,
    text(
        HASH_PATTERN,
        "A blake3 hash, or an id derived from one (transaction, block, datanet, contribution): 64 hex digits."
    )
);
text_schema!(
    /// A datanet's row kind (`trib_types::DataType`).
    DataType,
    one_of(&DATA_TYPES, "A datanet's row kind.")
);
text_schema!(
    /// Who may read a datanet's rows (`trib_types::Visibility`).
    Visibility,
    one_of(&VISIBILITIES, "Who may read a datanet's rows: anyone, or accounts with a grant.")
);

const DATA_TYPES: [&str; 3] = ["text", "instruction", "chat"];
const VISIBILITIES: [&str; 2] = ["public", "permissioned"];

#[cfg(test)]
mod tests {
    use super::*;
    use trib_types::{DataType as RealDataType, Visibility as RealVisibility};

    fn pattern_of<T: ToSchema>() -> String {
        match T::schema() {
            RefOr::T(Schema::Object(o)) => o.pattern.expect("a pattern"),
            other => panic!(
                "not an object schema: {}",
                serde_json::to_string(&other).unwrap()
            ),
        }
    }

    fn matches(pattern: &str, s: &str) -> bool {
        // The patterns above are anchored sequences of `[class]{n}` and
        // literals; a tiny matcher keeps the test free of a regex crate.
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        match pattern {
            ADDRESS_PATTERN => s.len() == 44 && s.starts_with("trib") && s[4..].chars().all(hex),
            AMOUNT_PATTERN => (1..=39).contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit()),
            HASH_PATTERN => {
                let h = s.strip_prefix("0x").unwrap_or(s);
                h.len() == 64 && h.chars().all(hex)
            }
            p => panic!("unknown pattern {p}"),
        }
    }

    fn serialized<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn text_schemas_match_what_the_types_serialize() {
        let address = trib_types::SecretKey::generate().public_key().address();
        assert!(matches(&pattern_of::<Address>(), &serialized(&address)));
        for amount in [0u128, 1, u128::MAX] {
            let s = serialized(&trib_types::Amount(amount));
            assert!(matches(&pattern_of::<Amount>(), &s), "{s}");
        }
        let hash = trib_types::Hash::of(b"schema");
        assert!(matches(&pattern_of::<Hash>(), &serialized(&hash)));
        let tx = trib_types::TxHash(hash);
        assert!(matches(&pattern_of::<Hash>(), &serialized(&tx)));
    }

    #[test]
    fn enum_schemas_list_exactly_the_serialized_variants() {
        let real: Vec<String> = [
            RealDataType::Text,
            RealDataType::Instruction,
            RealDataType::Chat,
        ]
        .iter()
        .map(serialized)
        .collect();
        assert_eq!(real, DATA_TYPES);
        for v in DATA_TYPES {
            serde_json::from_value::<RealDataType>(v.into()).unwrap();
        }
        let real: Vec<String> = [RealVisibility::Public, RealVisibility::Permissioned]
            .iter()
            .map(serialized)
            .collect();
        assert_eq!(real, VISIBILITIES);
        for v in VISIBILITIES {
            serde_json::from_value::<RealVisibility>(v.into()).unwrap();
        }
    }
}
