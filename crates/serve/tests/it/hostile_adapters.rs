use trib_model::{LoraTarget, TinySpec, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use trib_serve::{AdapterName, BatchModel, EngineLimits, RandomAdapter, ServeError};

use crate::common::{greedy, Fixture};

fn refusal(h: &trib_serve::EngineHandle, name: &AdapterName) -> ServeError {
    h.submit(greedy("hello", Some(name), 4))
        .unwrap()
        .collect_blocking()
        .unwrap_err()
}

#[test]
fn hostile_adapters_are_refused_with_a_reason_and_the_engine_keeps_serving() {
    let fx = Fixture::tiny();
    // Wrong shapes: made for a wider model.
    let wide = TinySpec {
        hidden: 96,
        intermediate: 192,
        ..TinySpec::default()
    }
    .config();
    RandomAdapter::qv_r8(fx.model.name(), 1)
        .write(&fx.store_root.join("wide"), &wide)
        .unwrap();
    // Right shapes, other base model.
    fx.add(
        "other-base",
        &RandomAdapter {
            base_model: "meta-llama/Llama-3.1-8B".into(),
            ..fx.spec(2)
        },
    );
    // NaN in B.
    {
        let a = fx.spec(3).build(&fx.cfg).unwrap();
        let pair = a.pair(1, LoraTarget::VProj).unwrap();
        let mut v: Vec<f32> = pair.b.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        v[5] = f32::NAN;
        let t =
            trib_model::Tensor::from_vec(v, pair.b.as_tensor().dims(), pair.b.as_tensor().device())
                .unwrap();
        pair.b.set(&t).unwrap();
        trib_model::save_peft(&a, &fx.store_root.join("nan")).unwrap();
    }
    // Rank above the serving limit (64).
    fx.add(
        "huge-rank",
        &RandomAdapter {
            r: 128,
            ..fx.spec(4)
        },
    );
    // Missing weights file.
    fx.add("no-weights", &fx.spec(5));
    std::fs::remove_file(fx.store_root.join("no-weights").join(ADAPTER_WEIGHTS_FILE)).unwrap();
    // Garbage weights.
    fx.add("garbage", &fx.spec(6));
    std::fs::write(
        fx.store_root.join("garbage").join(ADAPTER_WEIGHTS_FILE),
        b"\x10\0\0\0\0\0\0\0not json",
    )
    .unwrap();
    // Not JSON config.
    fx.add("bad-config", &fx.spec(7));
    std::fs::write(
        fx.store_root.join("bad-config").join(ADAPTER_CONFIG_FILE),
        b"{ nope",
    )
    .unwrap();
    let good = fx.add("good", &fx.spec(8));

    let h = fx.engine(EngineLimits::default(), 1 << 30);
    let expect = [
        ("wide", "shape"),
        ("other-base", "trained for base model"),
        ("nan", "non-finite"),
        ("huge-rank", "128"),
        ("no-weights", ADAPTER_WEIGHTS_FILE),
        ("garbage", "safetensors"),
        ("bad-config", "adapter_config.json"),
    ];
    for (name, needle) in expect {
        let e = refusal(&h, &AdapterName::parse(name).unwrap());
        assert_eq!(e.http_status(), 422, "{name}: {e}");
        assert!(
            e.to_string().contains(needle),
            "{name}: {e:?} should mention {needle:?}"
        );
        assert!(
            !e.to_string().contains("trib-serve-adapter-"),
            "no temporary paths leak: {e}"
        );
    }
    let e = refusal(&h, &AdapterName::parse("nobody").unwrap());
    assert_eq!(e.http_status(), 404, "{e}");
    // Path traversal never becomes an adapter name.
    let e = ServeError::from(AdapterName::parse("../good").unwrap_err());
    assert_eq!(e.http_status(), 400);
    assert!(e.to_string().contains("traversal"), "{e}");

    let st = h.adapters();
    assert_eq!(
        (st.bytes, st.load_failures),
        (0, 8),
        "nothing of the refused adapters stays: {st:?}"
    );
    let ok = h
        .submit(greedy("hello", Some(&good), 4))
        .unwrap()
        .collect_blocking()
        .unwrap();
    assert_eq!(ok.usage.completion_tokens, ok.tokens.len());
    assert_eq!(h.stats().failed, 8);
}
