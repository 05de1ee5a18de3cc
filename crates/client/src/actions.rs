//! Ledger actions a client builds from what a node or a local run produced,
//! so every caller signs the same action for the same facts: a local run
//! (`trib factory train --register`) and a node job (`trib factory
//! register`, from the job's view) register through [`register_adapter`].

use trib_ledger::{datanet_id, Action};
use trib_model::factory::TrainingSummary;
use trib_types::ModelId;

/// The `RegisterAdapter` action for the adapter a finished job wrote, all
/// from its `summary`: the content id, base model and config hash, the
/// metrics hash ([`TrainingSummary::metrics_hash`]), the job's name
/// (`adapter` when unnamed) and prices; with the datanet versions it was
/// trained on (`(name, version)`).
pub fn register_adapter(summary: &TrainingSummary, datanets: &[(String, u32)]) -> Action {
    Action::RegisterAdapter {
        adapter: summary.adapter_id,
        base: ModelId(summary.base_model_hash),
        name: summary.name.clone().unwrap_or_else(|| "adapter".into()),
        datanets: datanets.iter().map(|(n, v)| (datanet_id(n), *v)).collect(),
        config_hash: summary.config_hash,
        metrics_hash: summary.metrics_hash(),
        price_in_per_1k: summary.price_input_per_1k,
        price_out_per_1k: summary.price_output_per_1k,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use trib_model::factory::{DataStats, EvalResult};
    use trib_types::{AdapterId, Amount, Hash};

    use super::*;

    fn summary() -> TrainingSummary {
        let eval = |loss: f64| EvalResult {
            loss,
            perplexity: loss.exp(),
            tokens: 10,
            examples: 2,
        };
        TrainingSummary {
            format: 1,
            name: None,
            config_hash: Hash::of(b"config"),
            training_hash: Hash::of(b"training"),
            base_model: "m.gguf".into(),
            base_model_hash: Hash::of(b"base"),
            sources: Vec::new(),
            data: DataStats::default(),
            train_examples: 8,
            validation_examples: 2,
            steps: 4,
            tokens_trained: 100,
            final_train_loss: Some(1.5),
            eval_before: Some(eval(2.0)),
            eval_after: Some(eval(1.25)),
            precision: "F32".into(),
            adapter_dir: PathBuf::from("out/adapter"),
            adapter_id: AdapterId(Hash::of(b"adapter")),
            adapter_hash: Hash::of(b"weights"),
            adapter_config_hash: Hash::of(b"adapter config"),
            gradient_cache: None,
            price_input_per_1k: Amount::parse_open("0.5").unwrap(),
            price_output_per_1k: Amount::parse_open("2").unwrap(),
            elapsed_s: 1.0,
        }
    }

    #[test]
    fn a_trained_adapter_registers_with_its_summary_prices_and_datanet_versions() {
        let s = summary();
        let Action::RegisterAdapter {
            adapter,
            base,
            name,
            datanets,
            config_hash,
            metrics_hash,
            price_in_per_1k,
            price_out_per_1k,
        } = register_adapter(&s, &[("law".into(), 2)])
        else {
            panic!("not RegisterAdapter");
        };
        assert_eq!((adapter, base), (s.adapter_id, ModelId(s.base_model_hash)));
        assert_eq!(name, "adapter", "an unnamed job registers as `adapter`");
        let named = TrainingSummary {
            name: Some("law-lora".into()),
            ..s.clone()
        };
        let Action::RegisterAdapter { name, .. } = register_adapter(&named, &[]) else {
            panic!("not RegisterAdapter");
        };
        assert_eq!(name, "law-lora", "a named job registers under its name");
        assert_eq!(datanets, vec![(datanet_id("law"), 2)]);
        assert_eq!(config_hash, s.config_hash);
        assert_eq!(price_in_per_1k, Amount::parse_open("0.5").unwrap());
        assert_eq!(price_out_per_1k, Amount::parse_open("2").unwrap());
        // The metrics hash covers the evaluations and the final loss only.
        let metrics = serde_json::json!({
            "eval_before": s.eval_before,
            "eval_after": s.eval_after,
            "final_train_loss": s.final_train_loss,
        });
        assert_eq!(metrics_hash, Hash::of(metrics.to_string().as_bytes()));
        let mut later = s.clone();
        later.elapsed_s = 99.0;
        assert_eq!(later.metrics_hash(), metrics_hash);
        later.eval_after = Some(EvalResult {
            loss: 1.0,
            perplexity: 1.0_f64.exp(),
            tokens: 10,
            examples: 2,
        });
        assert_ne!(later.metrics_hash(), metrics_hash);
    }
}
