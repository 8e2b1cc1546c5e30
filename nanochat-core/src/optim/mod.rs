//! Optimizers. AdamW (here) updates parameters in place through the fused kernel; Muon and
//! nanochat's parameter groups come with the training pipeline.

mod adamw;

pub use adamw::{AdamW, AdamWConfig};
