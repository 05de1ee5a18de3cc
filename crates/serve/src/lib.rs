//! OpenLoRA: the multi-adapter serving engine. One base model, an adapter cache
//! bounded in bytes, a continuous-batching scheduler that runs the base matmul
//! once per batch and the LoRA term per adapter group. No HTTP here.
