//! The assistant's tools: the calculator nanochat's engine runs on the code between
//! `<|python_start|>` and `<|python_end|>`, and the sandboxed `python3` runner that evaluations
//! (HumanEval) run generated code in.

mod calculator;
pub mod sandbox;

pub use calculator::{calculator, MAX_EXPRESSION_LEN};
pub use sandbox::{run_python, Outcome, SandboxLimits, SandboxOutcome};
