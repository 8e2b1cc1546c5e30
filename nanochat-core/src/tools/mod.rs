//! The assistant's tools. One for now: the calculator nanochat's engine runs on the code
//! between `<|python_start|>` and `<|python_end|>`.

mod calculator;

pub use calculator::{calculator, MAX_EXPRESSION_LEN};
