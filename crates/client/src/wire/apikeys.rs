//! JSON shapes of the API-key routes (`/v1/apikeys`): a key is shown by its
//! id and first characters, never by its text (the text only once, in
//! [`NewApiKeyView`], when it is created).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schema;
use trib_types::{Address, Amount};

/// One key of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyView {
    /// The key's id: the first 16 hex digits of its stored hash.
    pub id: String,
    /// Its first characters (`trib-sk-` and 4 hex digits), when the node
    /// kept them.
    pub prefix: Option<String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// `GET /v1/apikeys` (signed by the account): the account's keys and what
/// they may spend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyList {
    /// The account (the request's signer).
    #[schema(value_type = schema::Address)]
    pub account: Address,
    /// The operator that settles this node's answers (`None` when the node
    /// serves no model).
    #[schema(value_type = Option<schema::Address>)]
    pub operator: Option<Address>,
    /// What the account still allows that operator to charge, base units:
    /// the allowance every key of the account spends from.
    #[schema(value_type = Option<schema::Amount>)]
    pub allowance: Option<Amount>,
    /// The keys, oldest first.
    pub keys: Vec<ApiKeyView>,
}

/// `POST /v1/apikeys` (signed by the account): the new key, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewApiKeyView {
    /// The key text (`trib-sk-…`): the Bearer token of paid requests.
    pub api_key: String,
    /// The account it charges.
    #[schema(value_type = schema::Address)]
    pub account: Address,
    /// Its id and first characters, as the list shows them.
    pub key: ApiKeyView,
}
