//! chat-rl tests: REINFORCE raises the mean reward of a tiny model on synthetic arithmetic
//! (after a short supervised warm-up, so that some samples are right and the advantages are
//! not all zero); a step with equal rewards leaves the weights unchanged.

use std::sync::Arc;

use super::*;
use crate::data::{DataLoader, Packing};
use crate::engine::{Engine, GenerateParams};
use crate::model::ForwardOptions;
use crate::optim::{muon_momentum, OptimConfig, Optimizer};
use crate::tasks::{Arithmetic, Split, Task};
use crate::tokenizer::tests::small_tokenizer;
use crate::{Device, GPTConfig, GPT};

/// A tiny model fine-tuned for `steps` on arithmetic conversations.
fn warmed_up(steps: usize) -> Engine {
    let tok = small_tokenizer().clone();
    let config = GPTConfig {
        vocab_size: tok.vocab_size(),
        n_layer: 2,
        n_head: 2,
        n_kv_head: 2,
        n_embd: 64,
        block_size: 160,
        ..GPTConfig::default()
    };
    let dev = Device::cpu().unwrap();
    let model = GPT::new(config, &dev, DType::F32, 7).unwrap();
    let task: Arc<dyn Task> = Arc::new(Arithmetic::easy(4000, Split::Train));
    let mut loader = DataLoader::conversations(task, Packing::Padded, tok.clone(), 8, 128).unwrap();
    let mut optim = Optimizer::new(&model, &OptimConfig::default());
    let params: Vec<_> = model
        .named_parameters()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    for step in 0..steps {
        let b = loader.next_batch().unwrap();
        let tape = Tape::new();
        for p in &params {
            tape.watch(p);
        }
        let loss = model
            .forward(
                &b.inputs,
                (b.batch, b.seq),
                ForwardOptions::new()
                    .tape(&tape)
                    .targets(&b.targets, Reduction::Mean),
            )
            .unwrap();
        let grads = tape.backward(&loss).unwrap();
        optim.step(&grads, 1.0, muon_momentum(step)).unwrap();
    }
    Engine::new(model, tok).unwrap()
}

fn sampled(seed: u64) -> GenerateParams {
    GenerateParams {
        num_samples: 8,
        max_tokens: 64,
        temperature: 1.0,
        top_k: Some(50),
        seed: Some(seed),
    }
}

#[test]
fn reinforce_raises_the_mean_reward_on_arithmetic() {
    let engine = warmed_up(150);
    let n_test = 48;
    let test = Arithmetic::easy(n_test, Split::Test);
    let before = mean_reward(&engine, &test, n_test, &sampled(1)).unwrap();
    let cfg = RlConfig {
        total_steps: 40,
        examples_per_step: 4,
        num_samples: 8,
        max_new_tokens: 64,
        init_lr_frac: 0.15,
        ..RlConfig::default()
    };
    let mut rl =
        RlTrainer::new(engine, Arc::new(Arithmetic::easy(2000, Split::Train)), cfg).unwrap();
    let mut rewards = Vec::new();
    for _ in 0..rl.cfg.total_steps {
        rewards.push(rl.train_step().unwrap().mean_reward);
    }
    let after = mean_reward(&rl.engine, &test, n_test, &sampled(1)).unwrap();
    eprintln!("mean reward {before:.3} -> {after:.3}; training rewards {rewards:?}");
    assert!(
        before > 0.0 && before < 0.9,
        "the warm-up should leave room: {before}"
    );
    // 384 samples each: a standard error of about 0.023; the run is deterministic (seeded).
    assert!(
        after > before + 0.04,
        "mean reward {before:.3} -> {after:.3}"
    );
}

#[test]
fn settings_that_cannot_learn_are_refused() {
    let engine = crate::engine::tests::engine(64, 1);
    let task: Arc<dyn Task> = Arc::new(Arithmetic::easy(10, Split::Train));
    let one_sample = RlConfig {
        num_samples: 1,
        ..RlConfig::default()
    };
    let err = RlTrainer::new(engine, task, one_sample).err().unwrap();
    assert!(
        matches!(&err, crate::CoreError::InvalidArgument { value, .. } if value.ends_with(", 1")),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("2 samples per prompt"), "{err}");
}
