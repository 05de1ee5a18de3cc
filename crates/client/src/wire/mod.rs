//! Every JSON body of the node's HTTP API, one module per area. The node
//! serialises these types and clients deserialise them, so the two sides
//! cannot drift apart.

mod apikeys;
mod attribution;
mod datanets;
mod error;
mod jobs;
mod ledger;
mod models;
pub mod schema;

pub use apikeys::{ApiKeyList, ApiKeyView, NewApiKeyView};
pub use attribution::TraceRequest;
pub use datanets::{
    ContributionResponse, ContributionView, CreateDatanetBody, CreateDatanetRequest,
    CreateDatanetResponse, DatanetView, LeaderboardEntry, PublishPlan, RowView, VersionView,
};
pub use error::{ErrorBody, ErrorDetail, PageView};
pub use jobs::{JobDatanet, JobStatus, JobView};
pub use ledger::{
    AccountView, BlockView, StatusView, SubmitResponse, SupplyView, TxStatus, TxView,
};
pub use models::BaseModelView;
