//! The recipe per device and the exact command lines of its stages.

use std::path::Path;

use super::*;

fn cpu() -> SpeedrunOptions {
    SpeedrunOptions {
        rl_steps: 30,
        ..SpeedrunOptions::default()
    }
}

fn cuda() -> SpeedrunOptions {
    SpeedrunOptions {
        backend: Backend::Cuda(0),
        ..cpu()
    }
}

#[test]
fn cpu_recipe_is_the_small_one_on_bundled_data() {
    let r = Recipe::new(&cpu(), Path::new("/nonexistent")).unwrap();
    assert_eq!(
        (r.depth, r.vocab, r.seq_len, r.base_steps, r.chat_steps),
        (4, 8192, 256, Some(800), Some(150))
    );
    assert!(r.inputs.is_empty() && !r.cuda && r.dtype == "float32");
    let opts = SpeedrunOptions {
        depth: Some(2),
        base_steps: Some(5),
        ..cpu()
    };
    let r = Recipe::new(&opts, Path::new("/x")).unwrap();
    assert_eq!((r.depth, r.base_steps), (2, Some(5)));
}

#[test]
fn cuda_recipe_trains_on_the_corpus_and_validates_on_the_bundled_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = Recipe::new(&cuda(), dir.path()).unwrap_err();
    assert!(
        matches!(&err, CoreError::File { path, .. } if *path == dir.path().display().to_string()),
        "no corpus: an error naming the folder: {err:?}"
    );
    let missing = dir.path().join("absent");
    let err = Recipe::new(&cuda(), &missing).unwrap_err();
    assert!(
        matches!(&err, CoreError::Missing { path, hint } if *path == missing && hint.contains("scripts/fetch_data.sh")),
        "{err:?}"
    );
    std::fs::write(dir.path().join("bundled.jsonl"), "y").unwrap();
    let err = Recipe::new(&cuda(), dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("at least one training file besides"),
        "only the validation file: {err}"
    );
    std::fs::write(dir.path().join("sotu.jsonl"), "x".repeat(10_000_000)).unwrap();
    std::fs::write(dir.path().join("notes.md"), "ignored").unwrap();
    let r = Recipe::new(&cuda(), dir.path()).unwrap();
    assert_eq!(
        (r.depth, r.vocab, r.seq_len, r.dtype),
        (20, 65536, 2048, "bfloat16")
    );
    let names: Vec<_> = r
        .inputs
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(names, ["sotu.jsonl", "bundled.jsonl"], "validation last");
    // 10 MB allows about 4 x 2.2M tokens: a few steps of 524,288 tokens, far fewer than the
    // 20 tokens per parameter of a 560M-parameter model; the recipe says so.
    let steps = r.base_steps.unwrap();
    assert!((1..100).contains(&steps), "{steps}");
    assert_eq!(r.total_batch, Some(524_288));
    assert_eq!(r.total_batch.unwrap() % (r.batch_size * r.seq_len), 0);
    assert!(
        r.warning.as_deref().unwrap().contains("fewer than the"),
        "{:?}",
        r.warning
    );
    let given = SpeedrunOptions {
        base_steps: Some(3),
        ..cuda()
    };
    let r = Recipe::new(&given, dir.path()).unwrap();
    assert_eq!((r.base_steps, r.warning), (Some(3), None));
}

/// The stages' command lines, one string each, `report generate` last.
fn lines(opts: &SpeedrunOptions, corpus: &Path) -> Vec<String> {
    let r = Recipe::new(opts, corpus).unwrap();
    let mut v: Vec<String> = plan(&r, opts).iter().map(|s| s.argv.join(" ")).collect();
    v.push(report_generate().join(" "));
    v
}

/// The exact lines `nanochat speedrun` ran before its recipe moved into this module (captured
/// from that code for each of these flag sets).
#[test]
fn stage_lines_are_the_speedrun_s() {
    let none = Path::new("/nonexistent");
    let cpu_lines = [
        "nanochat report reset",
        "nanochat tok-train --vocab-size 8192",
        "nanochat tok-eval",
        "nanochat base-train --depth 4 --seq-len 256 --batch-size 4 --total-steps 800 --dtype float32 --device cpu --model-tag d4 --eval-every 200",
        "nanochat base-eval -g d4 --device cpu --samples",
        "nanochat mid-train --source base --base-model d4 --total-steps 150 --batch-size 4 --device cpu --eval-every 50 --dtype float32",
        "nanochat chat-eval -i mid -g d4 --device cpu --samples",
        "nanochat chat-sft --source mid --base-model d4 --total-steps 150 --batch-size 4 --device cpu --eval-every 50 --dtype float32",
        "nanochat chat-eval -i sft -g d4 --device cpu --samples",
        "nanochat report generate",
    ];
    assert_eq!(lines(&cpu(), none), cpu_lines);
    let rl = SpeedrunOptions {
        rl: true,
        quiet: true,
        ..cpu()
    };
    assert_eq!(
        lines(&rl, none),
        [
            "nanochat report reset",
            "nanochat tok-train --vocab-size 8192",
            "nanochat tok-eval",
            "nanochat base-train --depth 4 --seq-len 256 --batch-size 4 --total-steps 800 --dtype float32 --device cpu --model-tag d4 --eval-every 200 --quiet",
            "nanochat base-eval -g d4 --device cpu --samples --quiet",
            "nanochat mid-train --source base --base-model d4 --total-steps 150 --batch-size 4 --device cpu --eval-every 50 --dtype float32 --quiet",
            "nanochat chat-eval -i mid -g d4 --device cpu --samples --quiet",
            "nanochat chat-sft --source mid --base-model d4 --total-steps 150 --batch-size 4 --device cpu --eval-every 50 --dtype float32 --quiet",
            "nanochat chat-eval -i sft -g d4 --device cpu --samples --quiet",
            "nanochat chat-rl -i sft -g d4 --total-steps 30 --device cpu --quiet",
            "nanochat chat-eval -i rl -g d4 --device cpu --samples --quiet",
            "nanochat report generate",
        ]
    );
    let small = SpeedrunOptions {
        max_problems: Some(2),
        depth: Some(2),
        vocab_size: Some(500),
        base_steps: Some(7),
        chat_steps: Some(3),
        ..cpu()
    };
    assert_eq!(
        lines(&small, none),
        [
            "nanochat report reset",
            "nanochat tok-train --vocab-size 500",
            "nanochat tok-eval",
            "nanochat base-train --depth 2 --seq-len 256 --batch-size 4 --total-steps 7 --dtype float32 --device cpu --model-tag d2 --eval-every 200",
            "nanochat base-eval -g d2 --device cpu --samples --max-per-task 2",
            "nanochat mid-train --source base --base-model d2 --total-steps 3 --batch-size 4 --device cpu --eval-every 50 --dtype float32",
            "nanochat chat-eval -i mid -g d2 --device cpu --samples --max-problems 2",
            "nanochat chat-sft --source mid --base-model d2 --total-steps 3 --batch-size 4 --device cpu --eval-every 50 --dtype float32",
            "nanochat chat-eval -i sft -g d2 --device cpu --samples --max-problems 2",
            "nanochat report generate",
        ]
    );
    // cuda: 10 MB of training shards allow 16 steps of 4 epochs (fewer than 20 tokens per
    // parameter); bundled.jsonl validates.
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    std::fs::write(c.join("shard_00000.parquet"), "x".repeat(10_000_000)).unwrap();
    std::fs::write(c.join("shard_00001.jsonl"), "x".repeat(1000)).unwrap();
    std::fs::write(c.join("bundled.jsonl"), "y").unwrap();
    let d = c.display().to_string();
    let expect =
        |lines: &[&str]| -> Vec<String> { lines.iter().map(|l| l.replace("$C", &d)).collect() };
    assert_eq!(
        lines(&cuda(), c),
        expect(&[
            "nanochat report reset",
            "nanochat tok-train --vocab-size 65536 --input $C/shard_00000.parquet $C/shard_00001.jsonl",
            "nanochat tok-eval",
            "nanochat base-train --depth 20 --seq-len 2048 --batch-size 16 --total-steps 16 --dtype bfloat16 --device cuda:0 --model-tag d20 --eval-every 250 --total-batch-size 524288 --input $C/shard_00000.parquet $C/shard_00001.jsonl $C/bundled.jsonl",
            "nanochat base-eval -g d20 --device cuda:0",
            "nanochat mid-train --source base --base-model d20 --total-steps 1000 --batch-size 16 --device cuda:0 --eval-every 50 --dtype bfloat16 --total-batch-size 524288",
            "nanochat chat-eval -i mid -g d20 --device cuda:0",
            "nanochat chat-sft --source mid --base-model d20 --total-steps 1000 --batch-size 16 --device cuda:0 --eval-every 50 --dtype bfloat16 --total-batch-size 524288",
            "nanochat chat-eval -i sft -g d20 --device cuda:0",
            "nanochat report generate",
        ])
    );
    let full = SpeedrunOptions {
        rl: true,
        rl_steps: 5,
        max_problems: Some(9),
        quiet: true,
        ..cuda()
    };
    assert_eq!(
        lines(&full, c),
        expect(&[
            "nanochat report reset",
            "nanochat tok-train --vocab-size 65536 --input $C/shard_00000.parquet $C/shard_00001.jsonl",
            "nanochat tok-eval",
            "nanochat base-train --depth 20 --seq-len 2048 --batch-size 16 --total-steps 16 --dtype bfloat16 --device cuda:0 --model-tag d20 --eval-every 250 --total-batch-size 524288 --input $C/shard_00000.parquet $C/shard_00001.jsonl $C/bundled.jsonl --quiet",
            "nanochat base-eval -g d20 --device cuda:0 --quiet --max-per-task 9",
            "nanochat mid-train --source base --base-model d20 --total-steps 1000 --batch-size 16 --device cuda:0 --eval-every 50 --dtype bfloat16 --total-batch-size 524288 --quiet",
            "nanochat chat-eval -i mid -g d20 --device cuda:0 --quiet --max-problems 9",
            "nanochat chat-sft --source mid --base-model d20 --total-steps 1000 --batch-size 16 --device cuda:0 --eval-every 50 --dtype bfloat16 --total-batch-size 524288 --quiet",
            "nanochat chat-eval -i sft -g d20 --device cuda:0 --quiet --max-problems 9",
            "nanochat chat-rl -i sft -g d20 --total-steps 5 --device cuda:0 --quiet",
            "nanochat chat-eval -i rl -g d20 --device cuda:0 --quiet --max-problems 9",
            "nanochat report generate",
        ])
    );
    let names: Vec<&str> = plan(&Recipe::new(&full, c).unwrap(), &full)
        .iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        [
            "report reset",
            "tokenizer",
            "tokenizer eval",
            "base model",
            "CORE",
            "mid-training",
            "mid eval",
            "SFT",
            "SFT eval",
            "RL",
            "RL eval"
        ]
    );
}

/// `--recipe head`: HEAD's base run, no mid-training, SFT from the base model with its batch
/// inherited and one pass unless steps are given; on CUDA HEAD's speedrun.sh (depth 24,
/// vocabulary 32768, 8 tokens per scaling parameter, the automatic batch).
#[test]
fn head_stages_are_heads_speedrun() {
    let head = SpeedrunOptions {
        recipe: Architecture::Head,
        ..cpu()
    };
    let r = Recipe::new(&head, Path::new("/nonexistent")).unwrap();
    assert_eq!((r.base_steps, r.chat_steps), (Some(800), None));
    assert_eq!(
        lines(&head, Path::new("/nonexistent")),
        [
            "nanochat report reset",
            "nanochat tok-train --vocab-size 8192",
            "nanochat tok-eval",
            "nanochat base-train --recipe head --depth 4 --seq-len 256 --batch-size 4 --total-steps 800 --dtype float32 --device cpu --model-tag d4 --eval-every 200",
            "nanochat base-eval -g d4 --device cpu --samples",
            "nanochat chat-sft --source base --base-model d4 --device cpu --eval-every 50 --dtype float32",
            "nanochat chat-eval -i sft -g d4 --device cpu --samples",
            "nanochat report generate",
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    std::fs::write(c.join("shard_00000.parquet"), "x").unwrap();
    std::fs::write(c.join("shard_00001.parquet"), "x").unwrap();
    let d = c.display().to_string();
    let gpu = SpeedrunOptions {
        recipe: Architecture::Head,
        chat_steps: Some(7),
        ..cuda()
    };
    let want: Vec<String> = [
        "nanochat report reset",
        "nanochat tok-train --vocab-size 32768 --input $C/shard_00000.parquet",
        "nanochat tok-eval",
        "nanochat base-train --recipe head --depth 24 --seq-len 2048 --batch-size 16 --target-param-data-ratio 8 --dtype bfloat16 --device cuda:0 --model-tag d24 --eval-every 250 --input $C/shard_00000.parquet $C/shard_00001.parquet",
        "nanochat base-eval -g d24 --device cuda:0",
        "nanochat chat-sft --source base --base-model d24 --total-steps 7 --device cuda:0 --eval-every 50 --dtype bfloat16",
        "nanochat chat-eval -i sft -g d24 --device cuda:0",
        "nanochat report generate",
    ]
    .iter()
    .map(|l| l.replace("$C", &d))
    .collect();
    assert_eq!(lines(&gpu, c), want);
}

#[test]
fn across_ranks_on_the_cpu_the_rows_are_shared_out_and_the_step_kept() {
    let flag = |stage: &Stage, f: &str| -> Option<String> {
        let i = stage.argv.iter().position(|a| a == f)?;
        stage.argv.get(i + 1).cloned()
    };
    let one = plan(&Recipe::new(&cpu(), Path::new("/x")).unwrap(), &cpu());
    let two_opts = SpeedrunOptions {
        world_size: 2,
        ..cpu()
    };
    let two = plan(&Recipe::new(&two_opts, Path::new("/x")).unwrap(), &two_opts);
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(a.name, b.name);
        if ["base model", "mid-training", "SFT"].contains(&a.name) {
            // One process: 4 rows, one micro-batch (no flag); 2 ranks: 2 rows each, 1024 tokens.
            assert_eq!(
                flag(a, "--batch-size").as_deref(),
                Some("4"),
                "{}",
                a.args_line()
            );
            assert_eq!(
                flag(b, "--batch-size").as_deref(),
                Some("2"),
                "{}",
                b.args_line()
            );
            assert_eq!(flag(a, "--total-batch-size"), None);
            assert_eq!(flag(b, "--total-batch-size").as_deref(), Some("1024"));
        } else {
            assert_eq!(a.argv, b.argv);
        }
    }
    let three = SpeedrunOptions {
        world_size: 3,
        ..cpu()
    };
    let err = Recipe::new(&three, Path::new("/x"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("world size") && err.contains("1, 2 or 4"),
        "{err}"
    );
    // On GPUs the rows stay per GPU (nanochat's --device-batch-size).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sotu.jsonl"), "x".repeat(10_000_000)).unwrap();
    std::fs::write(dir.path().join("bundled.jsonl"), "y").unwrap();
    let g1 = cuda();
    let g8 = SpeedrunOptions {
        world_size: 8,
        ..cuda()
    };
    let (p1, p8) = (
        plan(&Recipe::new(&g1, dir.path()).unwrap(), &g1),
        plan(&Recipe::new(&g8, dir.path()).unwrap(), &g8),
    );
    for (a, b) in p1.iter().zip(&p8) {
        assert_eq!(a.argv, b.argv);
    }
}
