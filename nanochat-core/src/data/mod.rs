//! Text for training: documents read from plain text, JSONL or parquet files (optionally
//! gzipped), and the small public-domain corpus built into the library; and the accounting of
//! how much of it a run uses.

mod bestfit;
mod bestfit_loader;
mod documents;
mod loader;
mod nanochat_shards;
mod sft_loader;
mod usage;

pub use bestfit::{
    BestFitPacker, BufferedDoc, Chunk, PackedRows, SftPacker, SftProgress, StreamPosition,
};
pub use bestfit_loader::{BestFitLoader, BUFFER_SIZE, TOKENIZER_BATCH};
pub use documents::{
    bundled_documents, read_documents, split_train_val, text_documents, ParquetShard,
    BUNDLED_CORPUS, TEXT_DOC_CHARS,
};
pub use loader::{tokenize_documents, Batch, DataLoader, LoaderState, Packing, Source};
pub use nanochat_shards::{nanochat_data_dir, nanochat_shard_paths, NanochatLoader, ResumePoint};
pub use sft_loader::{SftLoader, SFT_BUFFER_SIZE};
pub use usage::{
    conversation_usage, unused_warning, ConversationUsage, SourceUsage, UNUSED_WARN_SHARE,
};
