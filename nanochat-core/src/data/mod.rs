//! Text for training: documents read from plain text, JSONL or parquet files (optionally
//! gzipped), and the small public-domain corpus built into the library.

mod documents;
mod loader;

pub use documents::{bundled_documents, read_documents, split_train_val, BUNDLED_CORPUS};
pub use loader::{tokenize_documents, Batch, DataLoader, LoaderState, Packing, Source};
