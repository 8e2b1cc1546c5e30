//! HEAD's schedules as functions of the optimizer step (`get_lr_multiplier`,
//! `get_muon_momentum`, `get_weight_decay` in `scripts/base_train.py` at 92d63d4; SFT's in
//! `scripts/chat_sft.py`). All in f64, as Python computes them.

/// Python's `round` on a float: to the nearest integer, ties to the even one
/// (`round(6.5) == 6`), which HEAD's `round(warmdown_ratio * num_iterations)` uses.
pub fn round_half_even(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// HEAD's pretraining schedules over `num_iterations` optimizer steps.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HeadSchedule {
    /// Optimizer steps of the run (N).
    pub num_iterations: usize,
    /// Steps of linear warmup (`--warmup-steps`, 40).
    pub warmup_steps: usize,
    /// Fraction of the run warming down at the end (`--warmdown-ratio`, 0.65).
    pub warmdown_ratio: f64,
    /// The learning-rate multiplier reached at the end (`--final-lr-frac`, 0.05).
    pub final_lr_frac: f64,
    /// Muon's weight decay at step 0 (base_train's `weight_decay_scaled`).
    pub weight_decay_scaled: f64,
}

impl HeadSchedule {
    /// HEAD's defaults (warmup 40, warmdown 0.65, final 0.05) over `num_iterations` steps with
    /// this starting weight decay.
    pub fn new(num_iterations: usize, weight_decay_scaled: f64) -> HeadSchedule {
        HeadSchedule {
            num_iterations,
            warmup_steps: 40,
            warmdown_ratio: 0.65,
            final_lr_frac: 0.05,
            weight_decay_scaled,
        }
    }

    /// Steps of the warmdown: `round(warmdown_ratio * N)`, ties to even.
    pub fn warmdown_iters(&self) -> usize {
        round_half_even(self.warmdown_ratio * self.num_iterations as f64).max(0) as usize
    }

    /// The learning-rate multiplier at step `it`: linear warmup to 1 over `warmup_steps`
    /// (checked first), 1, then linear down to `final_lr_frac` over the warmdown.
    pub fn lr_multiplier(&self, it: usize) -> f64 {
        let n = self.num_iterations;
        let wd = self.warmdown_iters();
        if it < self.warmup_steps {
            (it + 1) as f64 / self.warmup_steps as f64
        } else if it as f64 <= n as f64 - wd as f64 {
            1.0
        } else {
            let progress = (n as f64 - it as f64) / wd as f64;
            progress * 1.0 + (1.0 - progress) * self.final_lr_frac
        }
    }

    /// Muon's momentum at step `it`: 0.85 rising to 0.97 over the first 400 steps (checked
    /// first), 0.97, then down to 0.90 over the warmdown.
    pub fn muon_momentum(&self, it: usize) -> f64 {
        let n = self.num_iterations;
        let wd = self.warmdown_iters();
        let warmdown_start = n as f64 - wd as f64;
        if it < 400 {
            let frac = it as f64 / 400.0;
            (1.0 - frac) * 0.85 + frac * 0.97
        } else if it as f64 >= warmdown_start {
            let progress = (it as f64 - warmdown_start) / wd as f64;
            0.97 * (1.0 - progress) + 0.90 * progress
        } else {
            0.97
        }
    }

    /// Muon's weight decay at step `it`: a cosine from `weight_decay_scaled` to 0 over the run.
    pub fn muon_weight_decay(&self, it: usize) -> f64 {
        self.weight_decay_scaled
            * 0.5
            * (1.0 + (std::f64::consts::PI * it as f64 / self.num_iterations as f64).cos())
    }
}

/// HEAD's SFT schedules: every group's rate is multiplied once by `init_lr_frac` (0.8), then by
/// a multiplier of the progress through the data (1 until half-way, then linearly to 0);
/// Muon's momentum rises from 0.85 to 0.95 over 300 steps.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SftSchedule {
    /// The factor applied once to every group's rate (0.8).
    pub init_lr_frac: f64,
    /// Fraction of the progress warming up (0).
    pub warmup_ratio: f64,
    /// Fraction of the progress warming down at the end (0.5).
    pub warmdown_ratio: f64,
    /// The multiplier at the end (0).
    pub final_lr_frac: f64,
}

impl Default for SftSchedule {
    fn default() -> Self {
        SftSchedule {
            init_lr_frac: 0.8,
            warmup_ratio: 0.0,
            warmdown_ratio: 0.5,
            final_lr_frac: 0.0,
        }
    }
}

impl SftSchedule {
    /// The learning-rate multiplier at `progress` in [0, 1] (conversations consumed over the
    /// dataset's size).
    pub fn lr_multiplier(&self, progress: f64) -> f64 {
        if progress < self.warmup_ratio {
            (progress + 1e-8) / self.warmup_ratio
        } else if progress <= 1.0 - self.warmdown_ratio {
            1.0
        } else {
            let decay = (progress - (1.0 - self.warmdown_ratio)) / self.warmdown_ratio;
            (1.0 - decay) * 1.0 + decay * self.final_lr_frac
        }
    }

    /// Muon's momentum at SFT step `it`: `0.85 + 0.10 min(it / 300, 1)`.
    pub fn muon_momentum(&self, it: usize) -> f64 {
        let frac = (it as f64 / 300.0).min(1.0);
        (1.0 - frac) * 0.85 + frac * 0.95
    }
}
