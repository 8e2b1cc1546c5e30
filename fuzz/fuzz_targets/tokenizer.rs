//! The tokenizer never panics: arbitrary bytes (lossily decoded) are encoded and must decode
//! back; arbitrary u32 ids are decoded (out-of-range ids give an error); arbitrary bytes parsed
//! as a conversation are rendered.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nanochat_core::tokenizer::chat::Conversation;
use nanochat_core::tokenizer::{train_tokenizer, Tokenizer, TrainOptions};

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let docs = nanochat_core::data::bundled_documents().unwrap();
        let opts = TrainOptions { vocab_size: 600, max_chars: 200_000, ..TrainOptions::default() };
        train_tokenizer(&docs, &opts).unwrap().0
    })
}

fuzz_target!(|data: &[u8]| {
    let tok = tokenizer();
    let text = String::from_utf8_lossy(data);
    let ids = tok.encode(&text);
    assert_eq!(tok.decode(&ids).unwrap(), text);
    let raw: Vec<u32> = data.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) % 1000).collect();
    let _ = tok.decode(&raw);
    if let Ok(conv) = Conversation::from_json(&text) {
        let _ = tok.render_conversation(&conv, 2048);
        let _ = tok.render_for_completion(&conv);
    }
});
