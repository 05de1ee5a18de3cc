use trib_serve::{EngineLimits, ObjectAdapterStore, Output};

use crate::common::{greedy, Fixture};

/// Requests (prompt, adapter index or base) of different prompt lengths.
fn cases() -> Vec<(String, Option<usize>)> {
    (0..10)
        .map(|i| {
            let prompt = format!(
                "the river {} flows into the sea {}",
                "and the hills ".repeat(i % 4),
                i
            );
            (prompt, if i % 5 == 0 { None } else { Some(i % 6) })
        })
        .collect()
}

#[test]
fn a_mixed_adapter_batch_gives_each_request_exactly_its_solo_output() {
    // F32 weights: trib-model switches from quantized to dequantized matmuls
    // above a few rows, so on quantized weights a batch and a single sequence
    // legitimately differ by the activation-quantization error (docs/serving.md).
    let fx = Fixture::tiny_with(trib_model::GgmlDType::F32);
    let names: Vec<_> = (0..6)
        .map(|i| fx.add(&format!("ad{i}"), &fx.spec(100 + i as u64)))
        .collect();
    let h = fx.engine(EngineLimits::default(), 1 << 30);
    for n in &names {
        h.start_adapter_load(n).unwrap().wait().unwrap();
    }
    let cases = cases();
    // Alone: one request at a time, so every decode step has batch size 1.
    let solo: Vec<Output> = cases
        .iter()
        .map(|(p, a)| {
            h.submit(greedy(p, a.map(|i| &names[i]), 16))
                .unwrap()
                .collect_blocking()
                .unwrap()
        })
        .collect();
    assert_eq!(h.stats().max_batch, 1);
    // Together: all submitted at once, decoded in shared steps.
    let subs: Vec<_> = cases
        .iter()
        .map(|(p, a)| h.submit(greedy(p, a.map(|i| &names[i]), 16)).unwrap())
        .collect();
    let together: Vec<Output> = subs
        .into_iter()
        .map(|s| s.collect_blocking().unwrap())
        .collect();
    for ((alone, batched), case) in solo.iter().zip(&together).zip(&cases) {
        assert_eq!(alone.tokens, batched.tokens, "request {case:?}");
        assert_eq!(alone.usage, batched.usage);
    }
    let st = h.stats();
    assert!(
        st.max_batch >= 4 && st.max_adapters_in_batch >= 3,
        "requests were batched across adapters: {st:?}"
    );
    // The adapters matter: on the same prompt they do not all agree with the base model.
    let p = "the river flows";
    let base = h
        .submit(greedy(p, None, 16))
        .unwrap()
        .collect_blocking()
        .unwrap()
        .tokens;
    let differing = names
        .iter()
        .filter(|n| {
            h.submit(greedy(p, Some(n), 16))
                .unwrap()
                .collect_blocking()
                .unwrap()
                .tokens
                != base
        })
        .count();
    assert!(
        differing >= 4,
        "only {differing} of 6 adapters changed the output"
    );
}

#[test]
fn an_adapter_from_an_object_store_serves_like_the_same_adapter_from_a_directory() {
    use object_store::{memory::InMemory, path::Path as ObjPath, ObjectStore, PutPayload};
    use std::sync::Arc;
    use trib_serve::{
        CacheConfig, Engine, EngineConfig, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE,
    };

    let fx = Fixture::tiny();
    let name = fx.add("shared", &fx.spec(7));
    let mem = Arc::new(InMemory::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for f in [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE] {
        let bytes = std::fs::read(fx.store_root.join("shared").join(f)).unwrap();
        let key = ObjPath::from(format!("tenant/shared/{f}"));
        rt.block_on(mem.put(&key, PutPayload::from(bytes))).unwrap();
    }
    let from_s3 = Engine::start(
        fx.model.clone(),
        Arc::new(ObjectAdapterStore::new(mem, "tenant").unwrap()),
        EngineConfig {
            cache: CacheConfig {
                capacity_bytes: 1 << 20,
                loader_threads: 1,
            },
            ..Default::default()
        },
    );
    let from_dir = fx.engine(EngineLimits::default(), 1 << 20);
    let a = from_s3
        .submit(greedy("hello there", Some(&name), 12))
        .unwrap()
        .collect_blocking()
        .unwrap();
    let b = from_dir
        .submit(greedy("hello there", Some(&name), 12))
        .unwrap()
        .collect_blocking()
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(from_s3.store_adapters().unwrap(), vec![name]);
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_with_the_numbers() {
    let fx = Fixture::tiny();
    let h = fx.engine(EngineLimits::default(), 1 << 20);
    let long = "word ".repeat(400);
    let e = h.submit(greedy(&long, None, 10)).unwrap_err();
    assert_eq!(e.http_status(), 400);
    let msg = e.to_string();
    assert!(msg.contains("256") && msg.contains("10"), "{msg}");
}
