//! nanochat HEAD's training recipe (commit 92d63d4, `scripts/base_train.py` and
//! `scripts/chat_sft.py`): its schedules of the learning rate, Muon's momentum and Muon's weight
//! decay ([`HeadSchedule`], [`SftSchedule`]), and its scaling-law settings, which derive the
//! model, the batch size, the learning-rate and weight-decay scales and the horizon from the
//! depth ([`HeadScaling`]). v1's schedules are [`crate::optim::LrSchedule`] and
//! [`crate::optim::muon_momentum`].

mod scaling;
mod schedule;
#[cfg(test)]
pub(crate) mod tests;

pub use scaling::{HeadScaling, HeadScalingArgs, Horizon, ParamCounts, B_REF};
pub use schedule::{round_half_even, HeadSchedule, SftSchedule};

use crate::model::Architecture;
use crate::{CoreError, Result};

/// Fine-tuning commands take the recipe from the model they start from: a `--recipe` flag
/// that names the other one is an error naming both (`command` names the flag's command,
/// `source` the checkpoint). `None`: nothing given, nothing to check.
pub fn check_recipe(
    command: &str,
    given: Option<Architecture>,
    model: Architecture,
    source: &str,
) -> Result<()> {
    match given {
        Some(g) if g != model => Err(CoreError::invalid(
            "--recipe",
            format!("{} ({command})", g.name()),
            format!(
                "the recipe of the model it starts from: {source} is a `{}` model (leave --recipe out: it follows the checkpoint)",
                model.name()
            ),
        )),
        _ => Ok(()),
    }
}
