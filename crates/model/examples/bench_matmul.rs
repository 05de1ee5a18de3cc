//! Micro-benchmark behind the weight-format decision in docs/model.md: the
//! 211 projections of one SmolLM2 decode token (30 layers x 7, plus the LM
//! head) as Q4_1 `QMatMul` vs dense f32 matmul, random weights.
//!
//! Run: `RAYON_NUM_THREADS=1 cargo run --release -p trib-model --example bench_matmul`
use candle_core::{
    quantized::{GgmlDType, QMatMul, QTensor},
    Device, Module, Tensor,
};
use std::time::Instant;
fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let shapes = [
        (576usize, 576usize),
        (192, 576),
        (192, 576),
        (576, 576),
        (1536, 576),
        (1536, 576),
        (576, 1536),
    ];
    let ws: Vec<Tensor> = shapes
        .iter()
        .map(|&(o, i)| Tensor::randn(0f32, 0.02, (o, i), &dev).unwrap())
        .collect();
    let qs: Vec<QMatMul> = ws
        .iter()
        .map(|w| QMatMul::from_qtensor(QTensor::quantize(w, GgmlDType::Q4_1).unwrap()).unwrap())
        .collect();
    let head = Tensor::randn(0f32, 0.02, (49152, 576), &dev)?;
    let x = Tensor::randn(0f32, 1.0, (1, 576), &dev)?;
    let x2 = Tensor::randn(0f32, 1.0, (1, 1536), &dev)?;
    for (name, quant) in [("f32", false), ("q4_1", true)] {
        let t = Instant::now();
        let n = 10;
        for _ in 0..n {
            for _layer in 0..30 {
                for (k, w) in ws.iter().enumerate() {
                    let inp = if k == 6 { &x2 } else { &x };
                    let _ = if quant {
                        qs[k].forward(inp)?
                    } else {
                        inp.matmul(&w.t()?)?
                    };
                }
            }
            let _ = x.matmul(&head.t()?)?;
        }
        println!(
            "{name}: {:.1} ms per token (matmuls only)",
            t.elapsed().as_secs_f64() * 1000.0 / n as f64
        );
    }
    Ok(())
}
