//! Fake models for testing evaluation: [`OracleModel`] answers every example of the tasks it
//! was shown correctly, [`RandomModel`] guesses. The scoring must give the oracle 1.0 on every
//! task (and ChatCORE 1.0) and the guesser about its baseline (ChatCORE about 0); the same for
//! CORE with [`OracleScorer`] and [`RandomScorer`].

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::core::LmScorer;
use super::ChatModel;
use crate::engine::GenerateParams;
use crate::tasks::{content_text, Task};
use crate::tokenizer::Tokenizer;
use crate::{CoreError, Result};

/// Knows the reference answer of every prompt of the tasks it was built from.
pub struct OracleModel {
    tokenizer: Tokenizer,
    answers: HashMap<Vec<u32>, String>,
}

impl OracleModel {
    /// Reads every example of `tasks`: prompt -> the reference answer's text.
    pub fn new(tokenizer: &Tokenizer, tasks: &[&dyn Task]) -> Result<OracleModel> {
        let mut answers = HashMap::new();
        for task in tasks {
            for i in 0..task.num_examples() {
                let conv = task.get_example(i)?;
                let prompt = tokenizer.render_for_completion(&conv)?;
                let last = conv.messages.last().expect("examples end with the answer");
                answers.insert(prompt, content_text(&last.content));
            }
        }
        Ok(OracleModel {
            tokenizer: tokenizer.clone(),
            answers,
        })
    }

    fn answer(&self, prompt: &[u32]) -> Result<&String> {
        self.answers.get(prompt).ok_or_else(|| CoreError::Internal {
            op: "oracle model",
            why: "it was not shown this prompt".into(),
        })
    }
}

impl ChatModel for OracleModel {
    fn candidate_logits(
        &self,
        prompts: &[Vec<u32>],
        candidates: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>> {
        prompts
            .iter()
            .zip(candidates)
            .map(|(p, cands)| {
                let answer = self.answer(p)?;
                cands
                    .iter()
                    .map(|&c| {
                        Ok(if self.tokenizer.decode(&[c])? == *answer {
                            1.0
                        } else {
                            0.0
                        })
                    })
                    .collect()
            })
            .collect()
    }

    fn complete(&self, prompt: &[u32], params: &GenerateParams) -> Result<Vec<String>> {
        Ok(vec![
            self.answer(prompt)?.clone();
            params.num_samples.max(1)
        ])
    }
}

/// Random logits and random `#### n` answers (seeded).
pub struct RandomModel {
    rng: Mutex<StdRng>,
}

impl RandomModel {
    /// A model whose draws are seeded by `seed`.
    pub fn new(seed: u64) -> RandomModel {
        RandomModel {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }
}

impl ChatModel for RandomModel {
    fn candidate_logits(&self, _: &[Vec<u32>], candidates: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let mut rng = self.rng.lock().expect("rng lock");
        Ok(candidates
            .iter()
            .map(|c| c.iter().map(|_| rng.random::<f32>()).collect())
            .collect())
    }

    fn complete(&self, _: &[u32], params: &GenerateParams) -> Result<Vec<String>> {
        let mut rng = self.rng.lock().expect("rng lock");
        Ok((0..params.num_samples.max(1))
            .map(|_| format!("I think so.\n#### {}", rng.random_range(1000..1_000_000)))
            .collect())
    }
}

/// Loss 0 and an exact match for the sequences it was told are right, loss 1 otherwise.
pub struct OracleScorer {
    gold: HashSet<Vec<u32>>,
}

impl OracleScorer {
    /// A scorer that knows `gold`, the right token sequences.
    pub fn new(gold: impl IntoIterator<Item = Vec<u32>>) -> OracleScorer {
        OracleScorer {
            gold: gold.into_iter().collect(),
        }
    }
}

impl LmScorer for OracleScorer {
    fn mean_losses(&self, seqs: &[Vec<u32>], _: &[(usize, usize)]) -> Result<Vec<f64>> {
        Ok(seqs
            .iter()
            .map(|s| if self.gold.contains(s) { 0.0 } else { 1.0 })
            .collect())
    }
    fn greedy_matches(&self, seq: &[u32], _: (usize, usize)) -> Result<bool> {
        Ok(self.gold.contains(seq))
    }
}

/// Random losses; never an exact match.
pub struct RandomScorer {
    rng: Mutex<StdRng>,
}

impl RandomScorer {
    /// A scorer whose losses are seeded by `seed`.
    pub fn new(seed: u64) -> RandomScorer {
        RandomScorer {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }
}

impl LmScorer for RandomScorer {
    fn mean_losses(&self, seqs: &[Vec<u32>], _: &[(usize, usize)]) -> Result<Vec<f64>> {
        let mut rng = self.rng.lock().expect("rng lock");
        Ok(seqs.iter().map(|_| rng.random::<f64>()).collect())
    }
    fn greedy_matches(&self, _: &[u32], _: (usize, usize)) -> Result<bool> {
        Ok(false)
    }
}
