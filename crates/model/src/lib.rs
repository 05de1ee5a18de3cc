//! Models: candle transformers for the Llama family, GGUF/safetensors loading,
//! tokenizer and chat templates, LoRA layers, generation and the training loop
//! used by ModelFactory. Never depends on the ledger.
