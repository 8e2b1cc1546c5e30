//! `nanochat report`: the report card. `generate` (the default) assembles the stages logged under
//! `<dir>/report/` into `report.md` with loss curves beside it; `reset` clears them for a new run.
//! `generate` prints the path of `report.md`, `reset` the folder it cleared.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nanochat_core::report;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Folder holding `report/` (default: the model root, $NANOCHAT_MODEL_DIR or the cache).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Device named in the header (default: the one the stages logged, else `cpu`).
    #[arg(long, global = true)]
    device: Option<String>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Write report.md (and the loss curves) from the logged stages (the default).
    Generate,
    /// Remove the logged stages, report.md and the loss curves.
    Reset,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let root = match args.dir {
        Some(d) => d,
        None => super::paths()?.model_root.clone(),
    };
    match args.action.unwrap_or(Action::Generate) {
        Action::Generate => {
            let path = report::generate_with_device(&root, args.device.as_deref())
                .with_context(|| format!("generating the report under {}", root.display()))?;
            println!("{}", path.display());
        }
        Action::Reset => {
            report::reset(&root)
                .with_context(|| format!("resetting the report under {}", root.display()))?;
            println!("{}", report::report_dir(&root).display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
