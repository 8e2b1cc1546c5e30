//! Arbitrary bytes given to the safetensors reader (checkpoints, fixtures, `--hf-path` models)
//! must give a tensor map or an error, never a panic or an abort.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = nanochat_core::io::parse_safetensors(data, "fuzz.safetensors") {
        for (name, t) in &file.tensors {
            // Every tensor read must be internally consistent.
            let n = match &t.data {
                nanochat_core::io::HostData::Float(v) => v.len(),
                nanochat_core::io::HostData::F32(v) => v.len(),
                nanochat_core::io::HostData::Int(v) => v.len(),
            };
            assert_eq!(n, t.len(), "tensor {name}");
        }
    }
});
