//! nanochat's schedules: the learning-rate multiplier (optional warmup, constant, linear
//! warmdown over the last part of training to a final fraction) and Muon's momentum warmup
//! (0.85 to 0.95 over the first 300 steps).

/// The learning-rate schedule of a run of `total_steps`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    /// Optimizer steps in the run.
    pub total_steps: usize,
    /// Fraction of the steps spent warming up from 0 (nanochat: 0).
    pub warmup_ratio: f64,
    /// Fraction of the steps at the end decaying linearly (nanochat: 0.2).
    pub warmdown_ratio: f64,
    /// The multiplier reached at the last step (nanochat: 0).
    pub final_lr_frac: f64,
}

impl LrSchedule {
    /// nanochat's defaults: no warmup, the last 20% warming down to 0.
    pub fn new(total_steps: usize) -> Self {
        LrSchedule {
            total_steps,
            warmup_ratio: 0.0,
            warmdown_ratio: 0.2,
            final_lr_frac: 0.0,
        }
    }

    /// The multiplier of the peak learning rates at step `it` (0-based), as nanochat's
    /// `get_lr_multiplier`.
    pub fn multiplier(&self, it: usize) -> f64 {
        let n = self.total_steps as f64;
        let warmup = (self.warmup_ratio * n).round() as usize;
        let warmdown = (self.warmdown_ratio * n).round() as usize;
        if it < warmup {
            (it + 1) as f64 / warmup as f64
        } else if it + warmdown <= self.total_steps {
            1.0
        } else {
            let progress = (self.total_steps - it) as f64 / warmdown as f64;
            progress + (1.0 - progress) * self.final_lr_frac
        }
    }
}

/// Muon's momentum at step `it`: 0.85 rising linearly to 0.95 over the first 300 steps (as
/// `get_muon_momentum` in nanochat's `scripts/base_train.py`).
pub fn muon_momentum(it: usize) -> f32 {
    let frac = (it as f32 / 300.0).min(1.0);
    (1.0 - frac) * 0.85 + frac * 0.95
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_schedule_matches_nanochat() {
        let s = LrSchedule::new(100);
        assert_eq!(s.multiplier(0), 1.0);
        assert_eq!(s.multiplier(80), 1.0);
        assert!((s.multiplier(81) - 19.0 / 20.0).abs() < 1e-12);
        assert!((s.multiplier(90) - 0.5).abs() < 1e-12);
        assert!((s.multiplier(99) - 0.05).abs() < 1e-12);
        let s = LrSchedule {
            warmup_ratio: 0.1,
            final_lr_frac: 0.1,
            ..LrSchedule::new(100)
        };
        assert!((s.multiplier(0) - 0.1).abs() < 1e-12);
        assert!((s.multiplier(9) - 1.0).abs() < 1e-12);
        assert!((s.multiplier(90) - (0.5 + 0.5 * 0.1)).abs() < 1e-12);
        // Monotone non-increasing after the warmup.
        let s = LrSchedule::new(37);
        assert!((0..36).all(|i| s.multiplier(i + 1) <= s.multiplier(i)));
    }

    #[test]
    fn muon_momentum_warms_up() {
        assert!((muon_momentum(0) - 0.85).abs() < 1e-7);
        assert!((muon_momentum(150) - 0.90).abs() < 1e-6);
        assert!((muon_momentum(300) - 0.95).abs() < 1e-7);
        assert!((muon_momentum(10_000) - 0.95).abs() < 1e-7);
    }
}
