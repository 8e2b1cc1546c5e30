//! Synthetic arithmetic word problems whose answers use the calculator tool: the assistant
//! sets up the expression, runs it (`<|python_start|>`), reads the output (`<|output_start|>`)
//! and ends with `#### answer`. Seeded by index (train and test seed ranges are disjoint), with
//! integer answers only. GSM8K is never trained on; these teach the tool-use format instead.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{final_answers_match, Split, Task};
use crate::tokenizer::chat::{Content, Conversation, Message, Part, PartKind};
use crate::tools::calculator;
use crate::{CoreError, Result};

const NAMES: [&str; 12] = [
    "Ada", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jon", "Kira", "Leo",
];
const ITEMS: [&str; 10] = [
    "apples", "marbles", "books", "stamps", "coins", "pencils", "shells", "cards", "cookies",
    "stickers",
];

/// The synthetic arithmetic task of this module: `size` word problems of a split, each
/// generated from its index.
pub struct Arithmetic {
    size: usize,
    split: Split,
    easy: bool,
}

impl Arithmetic {
    /// `size` problems of `split` (the regular difficulty; [`Arithmetic::easy`] for the easy set).
    pub fn new(size: usize, split: Split) -> Arithmetic {
        Arithmetic {
            size,
            split,
            easy: false,
        }
    }

    /// Additions of two numbers from 1 to 9 only (the first template): a curriculum for very
    /// small models, e.g. to show reinforcement learning at work in seconds.
    pub fn easy(size: usize, split: Split) -> Arithmetic {
        Arithmetic {
            size,
            split,
            easy: true,
        }
    }
}

impl Task for Arithmetic {
    fn name(&self) -> String {
        if self.easy {
            "arithmetic-easy"
        } else {
            "arithmetic"
        }
        .into()
    }
    fn num_examples(&self) -> usize {
        self.size
    }
    fn get_example(&self, index: usize) -> Result<Conversation> {
        let seed = match self.split {
            Split::Train => index as u64,
            Split::Test => 10_000_000 + index as u64,
        } ^ (3u64 << 40);
        let mut rng = StdRng::seed_from_u64(seed);
        let name = NAMES[rng.random_range(0..NAMES.len())];
        let item = ITEMS[rng.random_range(0..ITEMS.len())];
        let (a, b, c) = (
            rng.random_range(2..200u32),
            rng.random_range(2..50u32),
            rng.random_range(2..20u32),
        );
        let (a, b, template) = if self.easy {
            (rng.random_range(1..10u32), rng.random_range(1..10u32), 0)
        } else {
            (a, b, rng.random_range(0..5))
        };
        let (question, setup, expr) = match template {
            0 => (
                format!("{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"),
                format!("{name} starts with {a} {item} and gets {b} more, so we add them."),
                format!("{a} + {b}"),
            ),
            1 => {
                let (big, small) = (a.max(b), a.min(b));
                (
                    format!("{name} had {big} {item} and gave away {small}. How many {item} are left?"),
                    format!("{name} had {big} {item} and gave {small} away, so we subtract."),
                    format!("{big} - {small}"),
                )
            }
            2 => (
                format!("{name} buys {b} boxes with {c} {item} in each box. How many {item} is that in total?"),
                format!("There are {b} boxes of {c} {item} each, so we multiply."),
                format!("{b} * {c}"),
            ),
            3 => (
                format!("{name} has {a} {item}, then buys {b} packs of {c} {item}. How many {item} does {name} have?"),
                format!("{name} starts with {a} and adds {b} packs of {c}, so the total is {a} plus {b} times {c}."),
                format!("{a} + {b} * {c}"),
            ),
            _ => {
                let total = b * c;
                (
                    format!("{name} shares {total} {item} equally among {b} friends. How many {item} does each friend get?"),
                    format!("{total} {item} are split evenly between {b} friends, so we divide."),
                    format!("{total} // {b}").replace("//", "/"),
                )
            }
        };
        let output = calculator(&expr).ok_or_else(|| CoreError::Internal {
            op: "arithmetic task",
            why: format!("the calculator refused {expr}"),
        })?;
        // Division yields a float (Python semantics); the answer is its integer value.
        let answer = output.trim_end_matches(".0").to_string();
        let parts = vec![
            Part {
                kind: PartKind::Text,
                text: format!("{setup} Let me compute it:\n\n"),
            },
            Part {
                kind: PartKind::Python,
                text: expr,
            },
            Part {
                kind: PartKind::PythonOutput,
                text: output,
            },
            Part {
                kind: PartKind::Text,
                text: format!("\n\nThe answer is {answer}.\n\n#### {answer}"),
            },
        ];
        Ok(Conversation::new(vec![
            Message::user(&question),
            Message {
                role: "assistant".into(),
                content: Content::Parts(parts),
            },
        ]))
    }
    fn evaluate(&self, conversation: &Conversation, completion: &str) -> bool {
        final_answers_match(conversation, completion)
    }
}
