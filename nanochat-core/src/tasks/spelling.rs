//! Synthetic spelling tasks from a word list (`$NANOCHAT_DATA_DIR/words.txt` when fetched, else
//! the committed sample), each example drawn from a generator seeded by its index, so train and
//! test (a disjoint seed range) never overlap and every run sees the same examples:
//! - [`SpellingBee`]: "How many r are in strawberry?", answered by spelling the word out,
//!   counting by hand, checking with the calculator tool (`'strawberry'.count('r')`), and a final
//!   `#### 3`;
//! - [`SimpleSpelling`]: "Spell the word: apple" -> `apple:a,p,p,l,e`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{content_text, final_answers_match, Task};
use crate::tokenizer::chat::{Content, Conversation, Message, Part, PartKind};
use crate::tools::calculator;
use crate::{CoreError, Result};

static WORDS_SAMPLE: &str = include_str!("../../../data/samples/words.txt");

/// Which seeds a synthetic task draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Seeds from 0: the examples trained on.
    Train,
    /// Seeds offset far past any training index.
    Test,
}

impl Split {
    fn seed(self, index: usize, task_salt: u64) -> u64 {
        let base = match self {
            Split::Train => 0,
            Split::Test => 10_000_000,
        };
        (base + index as u64) ^ (task_salt << 40)
    }
}

fn load_words() -> Result<Vec<String>> {
    let fetched = super::data_dir()?.join("words.txt");
    let (text, source) = if fetched.exists() {
        (
            std::fs::read_to_string(&fetched).map_err(|e| CoreError::io(&fetched, e))?,
            fetched.display().to_string(),
        )
    } else {
        (
            WORDS_SAMPLE.to_string(),
            "the committed word list".to_string(),
        )
    };
    let words: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();
    if words.is_empty() {
        return Err(CoreError::no_data("words", source));
    }
    Ok(words)
}

/// The word list, and how many examples of which split a spelling task draws from it.
struct Words {
    words: Vec<String>,
    size: usize,
    split: Split,
}

impl Words {
    fn new(size: usize, split: Split) -> Result<Words> {
        Ok(Words {
            words: load_words()?,
            size,
            split,
        })
    }

    /// Example `index`'s generator (seeded by the split, the index and the task's `salt`) and
    /// the word it drew first.
    fn pick(&self, index: usize, salt: u64) -> (StdRng, &str) {
        let mut rng = StdRng::seed_from_u64(self.split.seed(index, salt));
        let word = &self.words[rng.random_range(0..self.words.len())];
        (rng, word)
    }
}

const TEMPLATES: [&str; 10] = [
    "How many {letter} are in the word {word}",
    "How many {letter} are in {word}",
    "Count the {letter} in {word}",
    "How many times does {letter} appear in {word}",
    "How many times does the letter {letter} occur in {word}",
    "In the word {word}, how many {letter} are there",
    "What is the number of {letter} in {word}",
    "Tell me how many {letter} {word} has",
    "Count how many times {letter} shows up in the word {word}",
    "How often does {letter} appear in {word}",
];

/// Letter counting (nanochat's `tasks/spellingbee.py` `SpellingBee`); see the module docs.
pub struct SpellingBee(Words);

impl SpellingBee {
    /// `size` examples of `split` over the word list; errors name the word file that cannot be read.
    pub fn new(size: usize, split: Split) -> Result<SpellingBee> {
        Words::new(size, split).map(SpellingBee)
    }
}

impl Task for SpellingBee {
    fn name(&self) -> String {
        "spelling-bee".into()
    }
    fn num_examples(&self) -> usize {
        self.0.size
    }
    fn get_example(&self, index: usize) -> Result<Conversation> {
        let (mut rng, word) = self.0.pick(index, 1);
        let letters: Vec<char> = word.chars().collect();
        let letter = if rng.random::<f64>() < 0.9 {
            letters[rng.random_range(0..letters.len())]
        } else {
            (b'a' + rng.random_range(0..26u8)) as char
        };
        let quotes = ["", "'", "\""];
        let (lq, wq) = (
            quotes[rng.random_range(0..3)],
            quotes[rng.random_range(0..3)],
        );
        let mut user = TEMPLATES[rng.random_range(0..TEMPLATES.len())]
            .replace("{letter}", &format!("{lq}{letter}{lq}"))
            .replace("{word}", &format!("{wq}{word}{wq}"));
        if rng.random::<f64>() < 0.3 {
            user = user.to_lowercase();
        }
        if rng.random::<f64>() < 0.5 {
            user.push('?');
        }
        let spelled: Vec<String> = letters.iter().map(|c| c.to_string()).collect();
        let mut manual = format!(
            "We are asked to count the letter '{letter}' in the word '{word}'. Let me count by hand first.\n\n\
             First spell the word out:\n{word}:{}\n\nThen count the occurrences of '{letter}':\n",
            spelled.join(",")
        );
        let mut running = 0;
        for (i, c) in letters.iter().enumerate() {
            if *c == letter {
                running += 1;
                manual.push_str(&format!("{}:{c} hit! count={running}\n", i + 1));
            } else {
                manual.push_str(&format!("{}:{c}\n", i + 1));
            }
        }
        manual.push_str(&format!("\nThis gives us {running}."));
        let expr = format!("'{word}'.count('{letter}')");
        let output = calculator(&expr).ok_or_else(|| CoreError::Internal {
            op: "spelling task",
            why: format!("the calculator refused {expr}"),
        })?;
        let parts = vec![
            Part {
                kind: PartKind::Text,
                text: manual,
            },
            Part {
                kind: PartKind::Text,
                text: "\n\nLet me double check with Python:\n\n".into(),
            },
            Part {
                kind: PartKind::Python,
                text: expr,
            },
            Part {
                kind: PartKind::PythonOutput,
                text: output.clone(),
            },
            Part {
                kind: PartKind::Text,
                text: format!(
                    "\n\nPython gives us {output}.\n\nMy final answer is:\n\n#### {output}"
                ),
            },
        ];
        Ok(Conversation::new(vec![
            Message::user(&user),
            Message {
                role: "assistant".into(),
                content: Content::Parts(parts),
            },
        ]))
    }
    /// The number after `####` in the completion equals the reference's.
    fn evaluate(&self, conversation: &Conversation, completion: &str) -> bool {
        final_answers_match(conversation, completion)
    }
}

/// Spelling a word out letter by letter (nanochat's `SimpleSpelling`); see the module docs.
pub struct SimpleSpelling(Words);

impl SimpleSpelling {
    /// `size` examples of `split` over the word list; errors name the word file that cannot be read.
    pub fn new(size: usize, split: Split) -> Result<SimpleSpelling> {
        Words::new(size, split).map(SimpleSpelling)
    }
}

impl Task for SimpleSpelling {
    fn name(&self) -> String {
        "simple-spelling".into()
    }
    fn num_examples(&self) -> usize {
        self.0.size
    }
    fn get_example(&self, index: usize) -> Result<Conversation> {
        let (_, word) = self.0.pick(index, 2);
        let spelled: Vec<String> = word.chars().map(|c| c.to_string()).collect();
        Ok(Conversation::new(vec![
            Message::user(&format!("Spell the word: {word}")),
            Message::assistant(&format!("{word}:{}", spelled.join(","))),
        ]))
    }
    fn evaluate(&self, conversation: &Conversation, completion: &str) -> bool {
        conversation
            .messages
            .last()
            .is_some_and(|m| content_text(&m.content).trim() == completion.trim())
    }
}
