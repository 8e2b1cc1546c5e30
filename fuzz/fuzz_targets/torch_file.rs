//! Arbitrary bytes given to the torch-file reader (nanochat's `model_*.pt`, `optim_*.pt`,
//! `token_bytes.pt`) and the restricted pickle reader (`tokenizer.pkl`) must give a value or an
//! error: never a panic, a hang, or unbounded memory. The replay of the seeds in `seeds/torch_file/` (and the inputs it found worth keeping) runs in
//! CI as `torchfile::tests::the_fuzz_corpus_replays_without_a_panic`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nanochat_core::torchfile::fuzz_one(data);
});
