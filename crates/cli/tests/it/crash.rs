//! The crash test of issue 2: kill `trib node` with SIGKILL at random
//! moments while transactions stream in, restart it, and check that every
//! transaction the node had reported committed is still there (same block),
//! that every transaction it had accepted (202) is committed in the end
//! (the mempool journal), then that `trib ledger verify` passes.
//!
//! scripts/crash-test.sh does the same from the shell, longer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use trib_node::types::{Amount, SecretKey, TxHash};

use crate::harness::{get_json, http, post_tx, transfer, NodeProc, TestHome};

/// Kills per run.
const KILLS: usize = 5;

/// Submits transfers from the producer as fast as the node takes them,
/// recording each accepted one, re-reading the next nonce after any failure
/// (after a restart it counts the journaled pending transactions).
pub(crate) fn submitter(
    url: Arc<Mutex<String>>,
    key: SecretKey,
    accepted: Arc<Mutex<Vec<TxHash>>>,
    stop: Arc<AtomicBool>,
) {
    let to = SecretKey::from_seed([3; 32]).address();
    let mut nonce: Option<u64> = None;
    while !stop.load(Ordering::Relaxed) {
        let u = url.lock().unwrap().clone();
        let n = match nonce {
            Some(n) => n,
            None => match http()
                .get(format!("{u}/v1/accounts/{}", key.address()))
                .send()
                .and_then(|r| r.json::<serde_json::Value>())
            {
                Ok(v) => v["next_nonce"].as_u64().unwrap(),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        let stx = transfer(&key, n, to, Amount(1 + n as u128));
        match post_tx(&u, &stx) {
            Ok((202, _)) => {
                accepted.lock().unwrap().push(stx.hash());
                nonce = Some(n + 1);
                // About 200 transactions a second: enough to keep every
                // block busy, few enough to re-check them all after each kill.
                std::thread::sleep(Duration::from_millis(5));
            }
            // Mempool full: let a block drain it.
            Ok((503, _)) => std::thread::sleep(Duration::from_millis(5)),
            // Refused or the node is gone: resynchronise.
            _ => {
                nonce = None;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Reads the blocks committed since `next_height`, recording the height of
/// every transaction the node reports in a block.
fn collect_committed(url: &str, next_height: &mut u64, committed: &mut HashMap<TxHash, u64>) {
    loop {
        let Ok(r) = http().get(format!("{url}/v1/blocks/{next_height}")).send() else {
            return;
        };
        if r.status().as_u16() != 200 {
            return;
        }
        let Ok(b) = r.json::<serde_json::Value>() else {
            return;
        };
        for h in b["txs"].as_array().unwrap() {
            committed.insert(h.as_str().unwrap().parse().unwrap(), *next_height);
        }
        *next_height += 1;
    }
}

#[test]
fn committed_transactions_survive_repeated_sigkill() {
    let h = TestHome::init_dev();
    let mut node = NodeProc::start(&h, 30);
    let url = Arc::new(Mutex::new(node.url.clone()));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sub = {
        let (url, key, accepted, stop) = (
            url.clone(),
            h.key("producer"),
            accepted.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || submitter(url, key, accepted, stop))
    };

    let mut rng = rand::thread_rng();
    let mut committed: HashMap<TxHash, u64> = HashMap::new();
    let mut next_height = 1;
    let started = Instant::now();
    for round in 0..KILLS {
        let run_for = Duration::from_millis(rng.gen_range(300..1200));
        let until = Instant::now() + run_for;
        while Instant::now() < until {
            collect_committed(&node.url, &mut next_height, &mut committed);
            std::thread::sleep(Duration::from_millis(rng.gen_range(10..60)));
        }
        let before_kill = committed.len();
        node.kill();
        node = NodeProc::start(&h, 30);
        *url.lock().unwrap() = node.url.clone();
        // Every transaction reported committed before the kill is still
        // committed, in the same block.
        for (hash, height) in &committed {
            let (s, v) = get_json(&format!("{}/v1/tx/{hash}", node.url));
            assert_eq!(
                s, 200,
                "round {round}: committed transaction {hash} lost after SIGKILL: {v}"
            );
            assert_eq!(v["status"], "committed", "round {round}: {hash}");
            assert_eq!(
                v["height"].as_u64(),
                Some(*height),
                "round {round}: {hash} moved blocks"
            );
        }
        eprintln!("round {round}: killed after {run_for:?}, {before_kill} committed transactions all survived");
    }
    stop.store(true, Ordering::Relaxed);
    sub.join().unwrap();
    // Every accepted transaction is committed once the node has caught up,
    // those accepted just before a kill included.
    let accepted = accepted.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    for hash in &accepted {
        loop {
            let (s, v) = get_json(&format!("{}/v1/tx/{hash}", node.url));
            if s == 200 && v["status"] == "committed" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "accepted transaction {hash} never committed: {s} {v}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    collect_committed(&node.url, &mut next_height, &mut committed);
    node.kill();

    assert!(
        committed.len() >= 20,
        "too few transactions committed to mean anything: {}",
        committed.len()
    );
    // A transaction journaled just before a kill, whose 202 the kill cut
    // off, is committed without the client having seen it accepted: at most
    // one per kill (one submitter, one request at a time).
    let accepted = accepted.len();
    assert!(
        committed.len() <= accepted + KILLS,
        "{} committed but only {accepted} accepted",
        committed.len()
    );
    let out = h.ok(&["ledger", "verify"]);
    assert!(out.contains("ledger OK"), "{out}");
    eprintln!(
        "{} transactions committed across {KILLS} SIGKILLs in {:?}",
        committed.len(),
        started.elapsed()
    );
}
