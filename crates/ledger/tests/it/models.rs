//! Model-registry scenarios: base models, adapters, datanet access, prices.

use trib_ledger::{Action, CurationMode, Params, TxError, Visibility};
use trib_types::{AdapterId, Amount, Hash, ModelId};

use crate::economy::*;
use crate::support::*;

fn register_adapter(
    adapter: &str,
    base: ModelId,
    datanets: Vec<(trib_types::DatanetId, u32)>,
    price: Amount,
) -> Action {
    Action::RegisterAdapter {
        adapter: AdapterId(Hash::of(adapter.as_bytes())),
        base,
        name: adapter.into(),
        datanets,
        config_hash: Hash::ZERO,
        metrics_hash: Hash::ZERO,
        price_in_per_1k: price,
        price_out_per_1k: price,
    }
}

fn base_model(chain: &mut TestChain, owner: u8) -> ModelId {
    let id = ModelId(Hash::of(b"base"));
    ok(
        chain,
        &user(owner),
        Action::RegisterBaseModel {
            model: id,
            name: "base".into(),
            architecture: "llama".into(),
            licence: "Apache-2.0".into(),
        },
    );
    id
}

#[test]
fn an_adapter_trained_on_a_permissioned_datanet_without_access_cannot_be_registered() {
    let mut chain = TestChain::new(&genesis(3));
    let base = base_model(&mut chain, 3);
    let d = create_datanet(
        &mut chain,
        &user(1),
        "private",
        CurationMode::OwnerApproval,
        Amount::ZERO,
        Visibility::Permissioned,
    );
    ok(&mut chain, &user(1), contribute(d, cid("r"), 2));
    ok(&mut chain, &user(1), curate(cid("r"), true, ""));
    ok(
        &mut chain,
        &user(1),
        Action::PublishVersion {
            datanet: d,
            root: Hash::ZERO,
            rows: 2,
            contributions: vec![cid("r")],
        },
    );
    let err = refused(
        &mut chain,
        &user(2),
        register_adapter("a1", base, vec![(d, 1)], Amount(10)),
    );
    match &err {
        TxError::NoDatanetAccess {
            datanet,
            name,
            address,
            ..
        } => {
            assert_eq!((*datanet, name.as_str(), *address), (d, "private", addr(2)));
        }
        other => panic!("expected NoDatanetAccess, got {other:?}"),
    }
    assert!(err.to_string().contains("GrantAccess"), "{err}");
    assert!(!chain.ledger.has_access(&d, &addr(2)).unwrap());

    ok(
        &mut chain,
        &user(1),
        Action::GrantAccess {
            datanet: d,
            to: addr(2),
        },
    );
    assert!(chain.ledger.has_access(&d, &addr(2)).unwrap());
    ok(
        &mut chain,
        &user(2),
        register_adapter("a1", base, vec![(d, 1)], Amount(10)),
    );
    ok(
        &mut chain,
        &user(1),
        Action::RevokeAccess {
            datanet: d,
            to: addr(2),
        },
    );
    assert!(!chain.ledger.has_access(&d, &addr(2)).unwrap());
    assert!(matches!(
        refused(
            &mut chain,
            &user(2),
            register_adapter("a2", base, vec![(d, 1)], Amount(10))
        ),
        TxError::NoDatanetAccess { .. }
    ));
    // The owner needs no grant; a version that does not exist is named.
    assert!(matches!(
        refused(
            &mut chain,
            &user(1),
            register_adapter("a3", base, vec![(d, 2)], Amount(10))
        ),
        TxError::UnknownDatanetVersion {
            version: 2,
            latest: 1,
            ..
        }
    ));
    // Access on a public datanet is not a thing.
    let public = create_datanet(
        &mut chain,
        &user(1),
        "open",
        CurationMode::OwnerApproval,
        Amount::ZERO,
        Visibility::Public,
    );
    assert!(matches!(
        refused(
            &mut chain,
            &user(1),
            Action::GrantAccess {
                datanet: public,
                to: addr(2)
            }
        ),
        TxError::NotPermissioned { .. }
    ));
}

#[test]
fn adapter_prices_must_stay_within_the_governed_bounds() {
    let mut chain = TestChain::new(&genesis(3));
    let base = base_model(&mut chain, 1);
    let max = Params::dev().model_max_price_per_1k;
    assert!(matches!(
        refused(
            &mut chain,
            &user(2),
            register_adapter("pricey", base, vec![], Amount(max.0 + 1))
        ),
        TxError::PriceOutOfBounds { .. }
    ));
    ok(
        &mut chain,
        &user(2),
        register_adapter("fair", base, vec![], max),
    );
    let id = AdapterId(Hash::of(b"fair"));
    let set = |p: Amount| Action::SetAdapterPrice {
        adapter: id,
        price_in_per_1k: p,
        price_out_per_1k: p,
    };
    assert!(matches!(
        refused(&mut chain, &user(3), set(Amount(5))),
        TxError::NotAdapterOwner { .. }
    ));
    assert!(matches!(
        refused(&mut chain, &user(2), set(Amount(max.0 + 1))),
        TxError::PriceOutOfBounds { .. }
    ));
    ok(&mut chain, &user(2), set(Amount(5)));
    let a = chain.ledger.adapter(&id).unwrap().unwrap();
    assert_eq!((a.price_in_per_1k, a.owner), (Amount(5), addr(2)));
    assert_eq!(chain.ledger.adapters().unwrap().len(), 1);
}

#[test]
fn an_adapter_needs_a_registered_base_model_and_ids_are_unique() {
    let mut chain = TestChain::new(&genesis(3));
    assert!(matches!(
        refused(
            &mut chain,
            &user(2),
            register_adapter("orphan", ModelId(Hash::of(b"nope")), vec![], Amount(1))
        ),
        TxError::UnknownBaseModel { .. }
    ));
    let base = base_model(&mut chain, 1);
    assert!(matches!(
        refused(
            &mut chain,
            &user(2),
            Action::RegisterBaseModel {
                model: base,
                name: "again".into(),
                architecture: "llama".into(),
                licence: "MIT".into(),
            }
        ),
        TxError::BaseModelExists { .. }
    ));
    let models = chain.ledger.base_models().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].owner, addr(1));
    assert_eq!(
        chain.ledger.base_model(&base).unwrap().unwrap().licence,
        "Apache-2.0"
    );
}
