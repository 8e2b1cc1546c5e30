//! nanochat HEAD's training recipe (commit 92d63d4, `scripts/base_train.py` and
//! `scripts/chat_sft.py`): its schedules of the learning rate, Muon's momentum and Muon's weight
//! decay ([`HeadSchedule`], [`SftSchedule`]), and its scaling-law settings, which derive the
//! model, the batch size, the learning-rate and weight-decay scales and the horizon from the
//! depth ([`HeadScaling`]). v1's schedules are [`crate::optim::LrSchedule`] and
//! [`crate::optim::muon_momentum`].

mod scaling;
mod schedule;
#[cfg(test)]
mod tests;

pub use scaling::{HeadScaling, HeadScalingArgs, Horizon, ParamCounts, B_REF};
pub use schedule::{round_half_even, HeadSchedule, SftSchedule};
