//! Training across processes under `mpirun` (the feature `mpi`; `./x test` enables it): two
//! ranks against one process over the same total batch, a resume on another world size, a
//! rank killed mid-run, and the TCP transport. Depth 1, T = 64, one shared tokenizer.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nanochat_core::checkpoint::{checkpoint_dir, list_steps, load_checkpoint_model, Phase};
use nanochat_core::{DType, Device};

mod common;

/// One tokenizer for every scenario (tok-train once per test binary).
fn tokenizer_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let out = common::nanochat_in(&dir)
            .args(common::TOK_500)
            .output()
            .unwrap();
        common::assert_success(&out);
        dir
    })
}

/// A fresh model root holding the shared tokenizer.
fn fresh_root() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let from = tokenizer_root().join("tokenizer");
    let to = tmp.path().join("tokenizer");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    tmp
}

/// base-train of depth 1, T = 64, two rows per rank, 512 tokens a step (4 micro-batches: 4 in
/// one process, 2 on each of 2 ranks), evaluating every 2 steps and saving every 2.
fn base_train(tag: &str, steps: u64, resume: Option<u64>) -> Vec<String> {
    let mut a: Vec<String> = [
        "base-train",
        "--depth",
        "1",
        "--seq-len",
        "64",
        "--batch-size",
        "2",
        "--total-batch-size",
        "512",
        "--eval-every",
        "2",
        "--eval-tokens",
        "512",
        "--save-every",
        "2",
        "--quiet",
        "--model-tag",
        tag,
        "--total-steps",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(steps.to_string());
    if let Some(s) = resume {
        a.extend(["--resume-from-step".into(), s.to_string()]);
    }
    a
}

/// `nanochat <args>` in `root`, in one process.
fn single(root: &Path, args: &[String]) -> Output {
    common::nanochat_in(root).args(args).output().unwrap()
}

/// `mpirun -np <n> [mca...] nanochat <args>` in `root`.
fn mpirun(root: &Path, n: usize, mca: &[&str], args: &[String]) -> Command {
    let mut c = Command::new("mpirun");
    c.env("NANOCHAT_BASE_DIR", root)
        .env_remove("NANOCHAT_MODEL_DIR")
        .env_remove("NANOCHAT_TOKENIZER_PATH")
        .env("NANOCHAT_DATA_DIR", root.join("no-data"))
        // CI runs as root.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["--oversubscribe", "-np", &n.to_string()])
        .args(mca)
        .arg(env!("CARGO_BIN_EXE_nanochat"))
        .args(args);
    c
}

fn metrics(root: &Path, tag: &str) -> Vec<serde_json::Value> {
    metrics_of(root, Phase::Base, tag)
}

fn metrics_of(root: &Path, phase: Phase, tag: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(checkpoint_dir(root, phase, tag).join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn weights(root: &Path, tag: &str, step: u64) -> Vec<(String, Vec<f32>)> {
    weights_of(root, Phase::Base, tag, step)
}

fn weights_of(root: &Path, phase: Phase, tag: &str, step: u64) -> Vec<(String, Vec<f32>)> {
    let dev = Device::cpu().unwrap();
    let dir = checkpoint_dir(root, phase, tag);
    let (model, _) = load_checkpoint_model(&dir, step, &dev, DType::F32).unwrap();
    model
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.to_vec_f32().unwrap()))
        .collect()
}

fn meta(root: &Path, tag: &str, step: u64) -> serde_json::Value {
    let path = checkpoint_dir(root, Phase::Base, tag).join(format!("meta_{step:06}.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The largest relative L2 difference over the parameters.
fn max_rel_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> (f64, String) {
    assert_eq!(a.len(), b.len());
    let mut worst = (0.0, String::new());
    for ((n, x), (m, y)) in a.iter().zip(b) {
        assert_eq!(n, m);
        let d: f64 = x.iter().zip(y).map(|(u, v)| ((u - v) as f64).powi(2)).sum();
        let s: f64 = x.iter().map(|u| (*u as f64).powi(2)).sum();
        let r = (d / s.max(1e-30)).sqrt();
        if r > worst.0 {
            worst = (r, n.clone());
        }
    }
    worst
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// The tolerances of two ranks against one process. The ranks sum their f32 gradients in
/// another order than one process's accumulation (rank partials, then the reduce-scatter), so
/// the gradients differ in the last bits (about 1e-7 relative), and six steps of Muon and AdamW
/// carry that into the weights: measured 3.4e-6 relative L2 at worst (`c_proj`; chat-sft's
/// three steps 2.2e-6), losses and gradient norms within 1e-7. The bars leave a margin of
/// 30-100x and sit far below what a wrong reduction gives (each mutation made by hand, and
/// caught at step 1 by the gradient norm, 0.393 when right): no reduction (each rank stepping
/// on its half) 0.258; a reduction scaled by 2 (a sum where a mean belongs) 0.785, which
/// Muon's scale-free update would hide from the weights; both ranks computing the same
/// micro-batches 0.545.
const WEIGHTS_TOL: f64 = 1e-4;
const LOSS_TOL: f64 = 1e-5;
const NORM_TOL: f64 = 1e-4;

fn assert_same_run(a: &[serde_json::Value], b: &[serde_json::Value], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: steps");
    for (x, y) in a.iter().zip(b) {
        let step = &x["step"];
        assert_eq!(step, &y["step"]);
        for (key, tol) in [
            ("loss", LOSS_TOL),
            ("grad_norm", NORM_TOL),
            ("lr_multiplier", 0.0),
        ] {
            let (u, v) = (x[key].as_f64(), y[key].as_f64());
            let (Some(u), Some(v)) = (u, v) else {
                panic!("{what}: step {step} {key}: {u:?} vs {v:?} (a skipped step?)");
            };
            assert!(rel(u, v) <= tol, "{what}: step {step} {key}: {u} vs {v}");
        }
        match (x.get("val_bpb"), y.get("val_bpb")) {
            (Some(u), Some(v)) => {
                let (u, v) = (u.as_f64().unwrap(), v.as_f64().unwrap());
                assert!(
                    rel(u, v) <= LOSS_TOL,
                    "{what}: step {step} val_bpb: {u} vs {v}"
                );
            }
            (None, None) => {}
            _ => panic!("{what}: step {step}: val_bpb in one run only"),
        }
    }
}

#[test]
fn two_ranks_train_as_one_process_and_resume_on_any_world_size() {
    let tmp = fresh_root();
    let root = tmp.path();
    // One process, 4 micro-batches a step.
    let out = single(root, &base_train("one", 6, None));
    common::assert_success(&out);
    // Two ranks, 2 micro-batches each; the ranks talk over TCP only (not shared memory), so
    // the network path is exercised too.
    let out = mpirun(
        root,
        2,
        &["--mca", "btl", "tcp,self"],
        &base_train("two", 6, None),
    )
    .output()
    .unwrap();
    common::assert_success(&out);
    // Only rank 0 printed the summary.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("\"model_tag\"").count(), 1, "{stdout}");
    let (one, two) = (metrics(root, "one"), metrics(root, "two"));
    assert_eq!(one.len(), 6);
    assert_same_run(&one, &two, "2 ranks vs 1 process");
    let (worst, name) = max_rel_diff(&weights(root, "one", 6), &weights(root, "two", 6));
    eprintln!("2 ranks vs 1 process: weights within {worst:.2e} ({name})");
    assert!(
        worst <= WEIGHTS_TOL,
        "2 ranks vs 1 process: {name} off by {worst:.2e}"
    );
    assert_eq!(meta(root, "two", 6)["world_size"], 2);
    assert_eq!(meta(root, "one", 6)["world_size"], 1);
    // The data order does not depend on the world size.
    assert_eq!(
        meta(root, "two", 6)["data_position"],
        meta(root, "one", 6)["data_position"]
    );

    // Resume on the same world size: bit-identical to the uninterrupted run.
    let copy_to = |tag: &str, step: u64| {
        let (from, to) = (
            checkpoint_dir(root, Phase::Base, "two"),
            checkpoint_dir(root, Phase::Base, tag),
        );
        std::fs::create_dir_all(&to).unwrap();
        for f in ["model", "optim", "meta"] {
            let ext = match f {
                "model" => "safetensors",
                "optim" => "bin",
                _ => "json",
            };
            let name = format!("{f}_{step:06}.{ext}");
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    };
    copy_to("two-again", 4);
    let out = mpirun(root, 2, &[], &base_train("two-again", 6, Some(4)))
        .output()
        .unwrap();
    common::assert_success(&out);
    assert_eq!(
        weights(root, "two-again", 6),
        weights(root, "two", 6),
        "2 ranks resumed at step 4 vs uninterrupted"
    );
    // Resume on another world size (2 ranks to step 4, then 1 process): within the tolerance
    // of the equivalence above.
    copy_to("two-then-one", 4);
    let out = single(root, &base_train("two-then-one", 6, Some(4)));
    common::assert_success(&out);
    let (worst, name) = max_rel_diff(&weights(root, "two-then-one", 6), &weights(root, "one", 6));
    assert!(
        worst <= WEIGHTS_TOL,
        "2 ranks then 1: {name} off by {worst:.2e}"
    );
    // Its metrics log starts at the step resumed from (the copied folder had none).
    assert_same_run(&metrics(root, "two-then-one"), &one[4..], "2 ranks then 1");
    assert_eq!(meta(root, "two-then-one", 6)["world_size"], 1);

    // chat-sft from the one-process base model: 2 ranks against 1 process, 4 micro-batches of
    // 2 rows of 64 tokens a step.
    let sft = |tag: &str| -> Vec<String> {
        [
            "chat-sft",
            "--source",
            "base",
            "--base-model",
            "one",
            "--tasks",
            "identity,arithmetic",
            "--batch-size",
            "2",
            "--seq-len",
            "64",
            "--total-batch-size",
            "512",
            "--total-steps",
            "3",
            "--eval-every",
            "3",
            "--quiet",
            "--model-tag",
            tag,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    common::assert_success(&single(root, &sft("sft-one")));
    common::assert_success(&mpirun(root, 2, &[], &sft("sft-two")).output().unwrap());
    let (one, two) = (
        metrics_of(root, Phase::Sft, "sft-one"),
        metrics_of(root, Phase::Sft, "sft-two"),
    );
    assert_eq!(one.len(), 3);
    assert_same_run(&one, &two, "chat-sft: 2 ranks vs 1 process");
    let (worst, name) = max_rel_diff(
        &weights_of(root, Phase::Sft, "sft-one", 3),
        &weights_of(root, Phase::Sft, "sft-two", 3),
    );
    eprintln!("chat-sft, 2 ranks vs 1 process: weights within {worst:.2e} ({name})");
    assert!(worst <= WEIGHTS_TOL, "chat-sft: {name} off by {worst:.2e}");

    // chat-rl: each rank samples and scores its share of a step's prompts (3 a step: shares of
    // 2 and 1), pass@1 is shared out too. The run saves into the source's tag, so the one-process
    // run is read before the ranks' overwrites it. The same samples were drawn when the mean
    // sampled length agrees (it differs from prompt to prompt). A model this small earns no
    // reward, so the advantages and the update are zero here: the reduction of a non-zero
    // policy gradient is the one base-train and chat-sft check above.
    let rl: Vec<String> = "chat-rl -i sft -g sft-one --total-steps 2 --examples-per-step 3 -n 2 \
        -m 8 --eval-examples 3 --eval-every 1 --quiet"
        .split_whitespace()
        .map(str::to_string)
        .collect();
    common::assert_success(&single(root, &rl));
    let (one_metrics, one_weights) = (
        metrics_of(root, Phase::Rl, "sft-one"),
        weights_of(root, Phase::Rl, "sft-one", 2),
    );
    common::assert_success(&mpirun(root, 2, &[], &rl).output().unwrap());
    let two_metrics = metrics_of(root, Phase::Rl, "sft-one");
    assert_eq!(one_metrics.len(), 2);
    for (x, y) in one_metrics.iter().zip(&two_metrics) {
        for key in ["mean_reward", "mean_tokens", "pass_at_1", "lr_multiplier"] {
            let (u, v) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!(
                (u - v).abs() <= 1e-9,
                "chat-rl step {}: {key} {u} vs {v}",
                x["step"]
            );
        }
    }
    let (worst, name) = max_rel_diff(&one_weights, &weights_of(root, Phase::Rl, "sft-one", 2));
    eprintln!("chat-rl, 2 ranks vs 1 process: weights within {worst:.2e} ({name})");
    assert!(worst <= WEIGHTS_TOL, "chat-rl: {name} off by {worst:.2e}");

    // Evaluations share their problems out and sum the counts: the result files are identical.
    let result = |file: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(root.join(file)).unwrap()).unwrap()
    };
    let evals: [(&str, Vec<&str>); 2] = [
        (
            "base-eval",
            vec![
                "base-eval",
                "-g",
                "one",
                "--samples",
                "--max-per-task",
                "6",
                "--split-tokens",
                "1024",
                "--device-batch-size",
                "2",
                "--quiet",
            ],
        ),
        (
            "chat-eval",
            vec![
                "chat-eval",
                "-i",
                "sft",
                "-g",
                "sft-one",
                "--samples",
                "-a",
                "ARC-Easy|GSM8K|SpellingBee",
                "-x",
                "7",
                "-b",
                "3",
                "-m",
                "8",
                "--quiet",
            ],
        ),
    ];
    for (name, args) in evals {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let with_output = |file: &str| -> Vec<String> {
            let mut a = args.clone();
            a.extend(["-o".to_string(), root.join(file).display().to_string()]);
            a
        };
        common::assert_success(&single(root, &with_output("one.json")));
        common::assert_success(
            &mpirun(root, 2, &[], &with_output("two.json"))
                .output()
                .unwrap(),
        );
        let (one, two) = (result("one.json"), result("two.json"));
        assert_eq!(one, two, "{name}: 2 ranks vs 1 process");
        if name == "chat-eval" {
            // Counted over all 7 problems (odd: the ranks' shares differ in size).
            assert_eq!(one["tasks"]["ARC-Easy"]["total"], 7, "{one}");
        }
    }
}

#[test]
fn commands_that_do_not_run_across_ranks_refuse_a_launch() {
    let tmp = fresh_root();
    let out = mpirun(tmp.path(), 2, &[], &["tok-eval".to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`tok-eval` runs in one process for now")
            && err.contains("base-train, mid-train, chat-sft"),
        "{err}"
    );
}

#[test]
fn a_total_batch_that_does_not_divide_among_the_ranks_is_refused() {
    let tmp = fresh_root();
    let root = tmp.path();
    // 3 ranks, 4 micro-batches a step.
    let out = mpirun(root, 3, &[], &base_train("three", 2, None))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("world size 3") && err.contains("total batch size"),
        "{err}"
    );
    // Every rank finds it; rank 0 alone prints it, whole.
    assert_eq!(err.matches("expected a multiple of").count(), 1, "{err}");
    assert!(
        !err.contains("rank 1: error") && !err.contains("rank 2: error"),
        "{err}"
    );
    // Nothing was written.
    assert!(list_steps(&checkpoint_dir(root, Phase::Base, "three")).is_empty());
}

#[test]
fn a_killed_rank_ends_the_job_and_the_last_checkpoint_resumes() {
    let tmp = fresh_root();
    let root = tmp.path();
    let mut args = base_train("killed", 100_000, None);
    let at = args.iter().position(|a| a == "--save-every").unwrap();
    args[at + 1] = "1".into();
    let at = args.iter().position(|a| a == "--eval-every").unwrap();
    args[at + 1] = "0".into();
    let mut job = mpirun(root, 2, &[], &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let dir = checkpoint_dir(root, Phase::Base, "killed");
    let start = Instant::now();
    while list_steps(&dir).len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no 3 checkpoints within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL rank 1 (a child of mpirun's launcher) in the middle of the run.
    let ranks = ranks_of(job.id());
    assert_eq!(
        ranks.len(),
        2,
        "the ranks of mpirun {}: {ranks:?}",
        job.id()
    );
    let victim = ranks[1];
    // SAFETY: kill(2) of a process this test started (through mpirun).
    assert_eq!(unsafe { libc_kill(victim, 9) }, 0);
    let killed = Instant::now();
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break s;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the job still runs 30 s after a rank was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    // The latest committed step loads and resumes (in one process).
    let last = *list_steps(&dir).last().unwrap();
    weights(root, "killed", last);
    let mut resume = base_train("killed", last + 1, Some(last));
    let at = resume.iter().position(|a| a == "--eval-every").unwrap();
    resume[at + 1] = "0".into();
    let out = single(root, &resume);
    common::assert_success(&out);
    assert_eq!(*list_steps(&dir).last().unwrap(), last + 1);
}

/// The processes whose parent is `pid` or one of its descendants and whose command is nanochat.
fn ranks_of(pid: u32) -> Vec<i32> {
    let mut all = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = &stat[stat.find('(').unwrap() + 1..close];
        let ppid: i32 = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        all.push((p, ppid, comm.to_string()));
    }
    let mut family = vec![pid as i32];
    let mut changed = true;
    while changed {
        changed = false;
        for (p, pp, _) in &all {
            if family.contains(pp) && !family.contains(p) {
                family.push(*p);
                changed = true;
            }
        }
    }
    let mut ranks: Vec<i32> = all
        .iter()
        .filter(|(p, _, c)| family.contains(p) && *p != pid as i32 && c.starts_with("nanochat"))
        .map(|(p, _, _)| *p)
        .collect();
    ranks.sort();
    ranks
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn the_speedrun_runs_across_two_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let args: Vec<String> = "speedrun --depth 1 --base-steps 4 --chat-steps 3 --max-problems 2 \
        --vocab-size 500 --rl --rl-steps 2 --quiet"
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let out = mpirun(root, 2, &[], &args).output().unwrap();
    common::assert_success(&out);
    // The training stages ran on both ranks (2 rows each, the one-process step of 4 x 256
    // tokens); tok-train, chat-rl and the report on rank 0.
    for phase in [Phase::Base, Phase::Mid, Phase::Sft] {
        let dir = checkpoint_dir(root, phase, "d1");
        let step = *list_steps(&dir).last().unwrap();
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("meta_{step:06}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(meta["world_size"], 2, "{phase:?}");
        assert_eq!(meta["run"]["batch_size"], 2, "{phase:?}: {}", meta["run"]);
    }
    assert!(checkpoint_dir(root, Phase::Rl, "d1")
        .join("metrics.jsonl")
        .exists());
    for file in [
        "base-eval",
        "chat-eval-mid",
        "chat-eval-sft",
        "chat-eval-rl",
    ] {
        assert!(root.join(format!("eval/{file}.json")).exists(), "{file}");
    }
    let md = std::fs::read_to_string(root.join("report/report.md")).unwrap();
    assert!(md.contains("## Summary"), "{md}");
}
