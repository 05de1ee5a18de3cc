//! Storage: the redb tables, and the JMT node stores (redb for the node,
//! memory for replay).

use std::collections::{BTreeMap, HashMap};

use jmt::storage::{LeafNode, Node, NodeBatch, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, Version};
use redb::{ReadableTable, TableDefinition};

use crate::state::{StateKey, StateRead};

/// `"genesis"` → genesis JSON; `"head"` → head height (u64 LE).
pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// height → borsh([`crate::Block`]).
pub(crate) const BLOCKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("blocks");
/// transaction hash → borsh([`crate::TxRecord`]).
pub(crate) const TXS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("txs");
/// borsh(StateKey) → borsh(value): the current state, for fast reads.
pub(crate) const STATE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("state");
/// borsh(NodeKey) → borsh(Node): every JMT node of every version.
pub(crate) const JMT_NODES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("jmt_nodes");
/// key hash (32) ‖ version (u64 BE) → `0` (deleted) or `1` ‖ value: JMT
/// values by version, for historical reads and proofs.
pub(crate) const JMT_VALUES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("jmt_values");

pub(crate) const META_GENESIS: &str = "genesis";
pub(crate) const META_HEAD: &str = "head";

/// A redb table of current values as a [`StateRead`].
pub(crate) struct RedbState<'t, T>(pub &'t T);

impl<T: ReadableTable<&'static [u8], &'static [u8]>> StateRead for RedbState<'_, T> {
    fn get_raw(&self, key: &StateKey) -> Result<Option<Vec<u8>>, String> {
        self.0
            .get(key.encode().as_slice())
            .map(|o| o.map(|g| g.value().to_vec()))
            .map_err(|e| e.to_string())
    }
}

pub(crate) fn value_key(key_hash: KeyHash, version: Version) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&key_hash.0);
    k[32..].copy_from_slice(&version.to_be_bytes());
    k
}

fn encode_node_key(key: &NodeKey) -> Vec<u8> {
    borsh::to_vec(key).expect("borsh encoding into a Vec cannot fail")
}

/// JMT nodes and values in redb tables.
pub(crate) struct RedbTree<'t, N, V> {
    pub nodes: &'t N,
    pub values: &'t V,
}

impl<N, V> TreeReader for RedbTree<'_, N, V>
where
    N: ReadableTable<&'static [u8], &'static [u8]>,
    V: ReadableTable<&'static [u8], &'static [u8]>,
{
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        match self.nodes.get(encode_node_key(node_key).as_slice())? {
            None => Ok(None),
            Some(g) => Ok(Some(borsh::from_slice(g.value())?)),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let lo = value_key(key_hash, 0);
        let hi = value_key(key_hash, max_version);
        let mut range = self.values.range(lo.as_slice()..=hi.as_slice())?;
        match range.next_back() {
            None => Ok(None),
            Some(entry) => {
                let (_, v) = entry?;
                let v = v.value();
                match v.first() {
                    Some(1) => Ok(Some(v[1..].to_vec())),
                    _ => Ok(None),
                }
            }
        }
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!(
            "get_rightmost_leaf is only used by JMT restore, which this ledger does not use"
        )
    }
}

/// Writes a JMT update batch into the redb tables.
pub(crate) fn write_tree_batch(
    nodes: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    values: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    batch: &NodeBatch,
) -> Result<(), redb::StorageError> {
    for (key, node) in batch.nodes() {
        let v = borsh::to_vec(node).expect("borsh encoding into a Vec cannot fail");
        nodes.insert(encode_node_key(key).as_slice(), v.as_slice())?;
    }
    let mut buf = Vec::new();
    for ((version, key_hash), value) in batch.values() {
        buf.clear();
        match value {
            Some(v) => {
                buf.push(1);
                buf.extend_from_slice(v);
            }
            None => buf.push(0),
        }
        values.insert(value_key(*key_hash, *version).as_slice(), buf.as_slice())?;
    }
    Ok(())
}

/// Applies one block's writes to the tree as `version`.
///
/// Blocks without deletions (the common case: transfers) use jmt's batch
/// insertion, which builds and hashes each touched internal node once;
/// blocks with deletions (and empty blocks) use the per-key path. Both give
/// the same root for the same contents (a JMT root depends only on its
/// key/value set), which `tests::batch_and_per_key_updates_agree` checks.
pub(crate) fn tree_update<R: TreeReader>(
    reader: &R,
    writes: &[(KeyHash, Option<OwnedValue>)],
    version: Version,
) -> anyhow::Result<(jmt::RootHash, TreeUpdateBatch)> {
    let tree = jmt::Sha256Jmt::new(reader);
    if !writes.is_empty() && writes.iter().all(|(_, v)| v.is_some()) {
        let set: Vec<(KeyHash, OwnedValue)> = writes
            .iter()
            .map(|(k, v)| (*k, v.clone().expect("checked: no deletions")))
            .collect();
        let (roots, batch) = tree.batch_put_value_sets(vec![set], None, version)?;
        let root = *roots
            .first()
            .ok_or_else(|| anyhow::anyhow!("jmt returned no root for version {version}"))?;
        Ok((root, batch))
    } else {
        tree.put_value_set(writes.to_vec(), version)
    }
}

/// A JMT in memory that keeps only the latest version (stale nodes are
/// dropped after each update): the replay verifier's tree.
#[derive(Default)]
pub(crate) struct MemoryTree {
    nodes: HashMap<NodeKey, Node>,
    values: HashMap<KeyHash, BTreeMap<Version, Option<OwnedValue>>>,
}

impl MemoryTree {
    pub(crate) fn apply(&mut self, update: TreeUpdateBatch) {
        let TreeUpdateBatch {
            node_batch,
            stale_node_index_batch,
            ..
        } = update;
        for (k, n) in node_batch.nodes() {
            self.nodes.insert(k.clone(), n.clone());
        }
        for ((version, kh), v) in node_batch.values() {
            let history = self.values.entry(*kh).or_default();
            // Only the latest value is needed; keep one entry per key.
            history.clear();
            history.insert(*version, v.clone());
        }
        for stale in stale_node_index_batch {
            self.nodes.remove(&stale.node_key);
        }
    }
}

impl TreeReader for MemoryTree {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.nodes.get(node_key).cloned())
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self
            .values
            .get(&key_hash)
            .and_then(|h| h.range(..=max_version).next_back())
            .and_then(|(_, v)| v.clone()))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!(
            "get_rightmost_leaf is only used by JMT restore, which this ledger does not use"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(i: u8) -> KeyHash {
        KeyHash(trib_types::Hash::of(&[i]).0)
    }

    proptest! {
        #[test]
        fn batch_and_per_key_updates_agree(
            blocks in proptest::collection::vec(
                proptest::collection::vec((0u8..40, proptest::option::weighted(0.85, any::<u16>())), 0..30),
                1..12,
            )
        ) {
            let (mut a, mut b) = (MemoryTree::default(), MemoryTree::default());
            for (version, writes) in blocks.into_iter().enumerate() {
                // Deduplicate keys (a block's writes are a map).
                let map: BTreeMap<u8, Option<u16>> = writes.into_iter().collect();
                let set: Vec<(KeyHash, Option<OwnedValue>)> =
                    map.into_iter().map(|(k, v)| (key(k), v.map(|v| v.to_le_bytes().to_vec()))).collect();
                let (ra, ua) = jmt::Sha256Jmt::new(&a).put_value_set(set.clone(), version as u64).unwrap();
                let (rb, ub) = tree_update(&b, &set, version as u64).unwrap();
                prop_assert_eq!(ra, rb, "roots differ at version {}", version);
                a.apply(ua);
                b.apply(ub);
            }
        }
    }
}
