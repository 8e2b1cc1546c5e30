//! nanochat's own numbers: the cross-entropy of the fixtures' logits against their targets
//! (ignore_index -1, mean) must equal the loss PyTorch computed.

use nanochat_core::io::read_safetensors;
use nanochat_core::ops::{cross_entropy, Reduction};
use nanochat_core::{DType, Device};

#[test]
fn cross_entropy_reproduces_pytorch_loss() {
    let dev = Device::cpu().unwrap();
    for name in ["gqa_tiny.safetensors", "mha_small.safetensors"] {
        let path = nanochat_tests::fixture(name);
        let p = path.display().to_string();
        let f = read_safetensors(&path).unwrap();
        let logits = f
            .get(&p, "output.logits")
            .unwrap()
            .to_device(&dev, DType::F32, &p, "output.logits")
            .unwrap();
        let targets: Vec<i32> = f
            .get(&p, "input.targets")
            .unwrap()
            .ints(&p, "input.targets")
            .unwrap()
            .iter()
            .map(|&t| t as i32)
            .collect();
        assert!(
            targets.contains(&-1),
            "{name}: the fixture exercises ignore_index"
        );
        let want = f
            .get(&p, "output.loss")
            .unwrap()
            .floats(&p, "output.loss")
            .unwrap()[0];
        let got = cross_entropy(None, &logits, &targets, Reduction::Mean)
            .unwrap()
            .to_scalar()
            .unwrap() as f64;
        let rel = (got - want).abs() / want.abs();
        assert!(
            rel < 1e-5,
            "{name}: loss {got} vs PyTorch {want} (rel {rel:e})"
        );
    }
}
