//! Optimizers: AdamW and Muon updates (fused kernels, in place), nanochat's parameter groups
//! ([`Optimizer`]) and schedules.

mod adamw;
mod muon;
mod nanochat;
mod schedule;

pub use adamw::{adamw_state, adamw_update, AdamW, AdamWConfig};
pub use muon::{muon_update, MuonConfig};
pub use nanochat::{rule_for, OptimConfig, Optimizer, Rule};
pub use schedule::{muon_momentum, LrSchedule};

#[cfg(test)]
mod tests;
