//! Optimizers: AdamW and Muon updates (fused kernels, in place), nanochat's parameter groups
//! ([`Optimizer`]) and schedules; HEAD's [`MuonAdamW`]; a run's optimizer under either recipe
//! ([`TrainOptimizer`]).

mod adamw;
mod muon;
mod muon_adamw;
#[cfg(test)]
mod muon_adamw_tests;
mod nanochat;
mod schedule;
mod train_optim;

pub use adamw::{adamw_state, adamw_update, AdamW, AdamWConfig};
pub use muon::{muon_update, MuonConfig};
pub use muon_adamw::{head_param_groups, GroupKind, MuonAdamW, MuonAdamWConfig, ParamGroup};
pub use nanochat::{rule_for, OptimConfig, Optimizer, Rule};
pub use schedule::{muon_momentum, LrSchedule};
pub use train_optim::{OptimSettings, OptimizerState, Schedules, SftSchedules, TrainOptimizer};

#[cfg(test)]
mod tests;
