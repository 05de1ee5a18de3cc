use std::path::Path;
use std::sync::Arc;

use trib_serve::{
    AdapterName, CacheConfig, ChatMessage, Engine, EngineConfig, GenerateRequest, LocalDirStore,
    Prompt, RandomAdapter, SamplingParams, ServedModel,
};

#[test]
fn smollm2_answers_a_chat_request_while_sharing_its_batch_with_an_adapter() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let path = match trib_model::locate_smollm2(&models) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIPPED: SmolLM2 is not available ({e}); run scripts/fetch-model.sh");
            return;
        }
    };
    let model = Arc::new(
        ServedModel::load(&path)
            .unwrap()
            .accept_base_name("HuggingFaceTB/SmolLM2-135M-Instruct"),
    );
    // trib-model's own generation loop, alone: the engine must give the same answer.
    let reference = {
        let prompt = model
            .model()
            .encode_chat(&[ChatMessage::new("user", "What is the capital of France?")])
            .unwrap();
        let cfg = trib_model::GenerationConfig {
            sampling: trib_model::SamplingConfig::greedy(),
            max_new_tokens: 20,
            extra_stop_tokens: vec![],
        };
        trib_model::generate(model.model(), None, &prompt, &cfg, |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap()
    };
    let store = tempfile::tempdir().unwrap();
    let spec = RandomAdapter::qv_r8("HuggingFaceTB/SmolLM2-135M-Instruct", 1);
    spec.write(&store.path().join("smol-r8"), model.model().config())
        .unwrap();
    let h = Engine::start(
        model,
        Arc::new(LocalDirStore::new(store.path())),
        EngineConfig {
            cache: CacheConfig {
                capacity_bytes: 64 << 20,
                loader_threads: 1,
            },
            ..Default::default()
        },
    );
    let chat = |adapter: Option<&str>| GenerateRequest {
        prompt: Prompt::Chat(vec![ChatMessage::new(
            "user",
            "What is the capital of France?",
        )]),
        adapter: adapter.map(|a| AdapterName::parse(a).unwrap()),
        sampling: SamplingParams::greedy(),
        max_tokens: Some(20),
        stop: vec![],
        rate_key: None,
    };
    h.start_adapter_load(&AdapterName::parse("smol-r8").unwrap())
        .unwrap()
        .wait()
        .unwrap();
    let base = h.submit(chat(None)).unwrap();
    let adapted = h.submit(chat(Some("smol-r8"))).unwrap();
    let base = base.collect_blocking().unwrap();
    let adapted = adapted.collect_blocking().unwrap();
    assert_eq!(
        base.text, reference.text,
        "the engine agrees with trib-model's generate"
    );
    assert!(
        base.text.contains("Paris"),
        "SmolLM2 answered {:?}",
        base.text
    );
    assert!(base.usage.prompt_tokens > 10 && base.usage.completion_tokens > 0);
    assert!(adapted.usage.completion_tokens > 0);
    assert!(h.stats().max_adapters_in_batch >= 1);
}
