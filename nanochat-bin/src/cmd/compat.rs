//! nanochat's flags that have no counterpart here, and its `-1` sentinels, so that command lines
//! copied from nanochat's scripts (`runs/speedrun.sh`, `runs/runcpu.sh` at 92d63d4) run:
//! `--run` (wandb's run name) is accepted and ignored with a note, `--fp8` is an error, and
//! `-1` means "disabled" or "automatic" where nanochat documents it so.

use anyhow::bail;

/// `--run` and `--fp8` (flattened into the commands nanochat's scripts call).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NanochatFlags {
    /// nanochat's wandb run name: accepted for nanochat's scripts and ignored (there is no
    /// wandb here; metrics go to metrics.jsonl and the report).
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,
    /// nanochat's FP8 training: GPU only (H100 and newer) and not yet implemented here; an
    /// error.
    #[arg(long)]
    pub fp8: bool,
    /// nanochat's FP8 scaling recipe: only with --fp8.
    #[arg(long, value_name = "RECIPE", value_parser = ["rowwise", "tensorwise"])]
    pub fp8_recipe: Option<String>,
}

impl NanochatFlags {
    /// Refuses `--fp8`; notes an ignored `--run`.
    pub fn check(&self, command: &str) -> anyhow::Result<()> {
        if self.fp8 || self.fp8_recipe.is_some() {
            bail!(
                "{command} --fp8: FP8 training is GPU only (H100 and newer) and not yet implemented in nanochat-rs; train in bfloat16 (--dtype bfloat16) instead"
            );
        }
        if let Some(run) = &self.run {
            eprintln!(
                "{command}: --run {run} is accepted for nanochat's scripts and ignored (no wandb here: metrics go to metrics.jsonl)"
            );
        }
        Ok(())
    }
}

/// A count where nanochat's `-1` means "disabled" (`--num-iterations`, `--resume-from-step`):
/// `-1` is `None`, a value of at least `min` is itself, anything else an error naming `flag`.
pub fn optional_count(flag: &str, v: Option<i64>, min: i64) -> anyhow::Result<Option<u64>> {
    match v {
        None | Some(-1) => Ok(None),
        Some(n) if n >= min => Ok(Some(n as u64)),
        Some(n) => bail!("{flag} {n}: expected at least {min}, or -1 (nanochat's \"disabled\")"),
    }
}

/// An interval where 0 and nanochat's `-1` both mean "only at the end" (`--eval-every`,
/// `--save-every`). Errors: below -1.
pub fn interval(flag: &str, v: i64) -> anyhow::Result<u64> {
    match v {
        -1 | 0 => Ok(0),
        n if n > 0 => Ok(n as u64),
        n => bail!("{flag} {n}: expected a number of steps, or 0 / -1 (only at the end)"),
    }
}

/// A positive real where nanochat's `-1` means "disabled" (`--target-flops`,
/// `--target-param-data-ratio`).
pub fn optional_positive(flag: &str, v: Option<f64>) -> anyhow::Result<Option<f64>> {
    match v {
        None => Ok(None),
        Some(-1.0) => Ok(None),
        Some(x) if x > 0.0 && x.is_finite() => Ok(Some(x)),
        Some(x) => bail!("{flag} {x}: expected a positive number, or -1 (nanochat's \"disabled\")"),
    }
}

/// clap's parser of a count where nanochat's `-1` means "all" or "disabled": `-1` or at least
/// 1 (a usage error otherwise, before anything loads).
pub fn count_or_minus_one(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(n) if n == -1 || n >= 1 => Ok(n),
        _ => Err(format!(
            "`{s}`: expected at least 1, or -1 (nanochat's \"all\")"
        )),
    }
}
