//! Tests of the report card: stage files, the generated markdown (sections, summary table,
//! wall-clock time), the loss-curve SVGs (well-formed for empty, single-point, constant and
//! NaN series), corrupt stage files and reset.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::svg::{line_chart, Series};
use super::*;

/// Checks that `svg` is one balanced `<svg>` element: every tag closed in order, quotes paired
/// inside tags, `&` only in entities, nothing after the root.
fn assert_well_formed(svg: &str) {
    assert!(svg.starts_with("<svg"), "{svg}");
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg;
    let mut closed_root = false;
    while let Some(i) = rest.find('<') {
        let text = &rest[..i];
        assert!(!closed_root || text.trim().is_empty(), "text after </svg>");
        for (k, _) in text.match_indices('&') {
            let ent = &text[k..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| ent.starts_with(e)),
                "raw & in {text:?}"
            );
        }
        assert!(!text.contains('>'), "stray > in {text:?}");
        let j = i + rest[i..].find('>').expect("unclosed tag");
        let tag = &rest[i + 1..j];
        assert!(!tag.contains('<'), "< inside tag {tag:?}");
        assert_eq!(tag.matches('"').count() % 2, 0, "unpaired quote in {tag:?}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
            closed_root = stack.is_empty();
        } else if !tag.ends_with('/') {
            assert!(!closed_root, "second root element");
            stack.push(tag.split_whitespace().next().expect("empty tag"));
        }
        rest = &rest[j + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert!(closed_root && rest.trim().is_empty());
}

/// The number of points of each `<polyline>`.
fn polylines(svg: &str) -> Vec<usize> {
    svg.match_indices("<polyline")
        .map(|(i, _)| {
            let tail = &svg[i..];
            let start = tail.find("points=\"").unwrap() + 8;
            let end = start + tail[start..].find('"').unwrap();
            tail[start..end].split_whitespace().count()
        })
        .collect()
}

fn write_metrics(dir: &Path, n: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut text = String::new();
    for step in 0..n {
        let mut v = json!({"step": step, "loss": 10.0 - step as f64, "lr_multiplier": 1.0,
                           "tokens_per_s": 1000.0, "mfu": 0.1});
        if step % 2 == 1 {
            v["val_bpb"] = json!(3.0 - step as f64 * 0.1);
        }
        text.push_str(&format!("{v}\n"));
    }
    text.push_str("not json\n{\"step\": 99, \"loss\": null}\n");
    std::fs::write(dir.join("metrics.jsonl"), text).unwrap();
}

/// The cells of the summary row of `metric`.
fn row<'a>(md: &'a str, metric: &str) -> Vec<&'a str> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {metric} ")))
        .unwrap_or_else(|| panic!("no row {metric}"));
    line.split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .skip(1)
        .collect()
}

#[test]
fn rfc3339_known_instants() {
    let at = |s| rfc3339_utc(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
}

#[test]
fn numbers_are_formatted_like_nanochat() {
    assert_eq!(fmt_float(0.25), "0.2500");
    assert_eq!(fmt_float(0.0), "0.0000");
    assert_eq!(fmt_float(2e-5), "2.0000e-5");
    assert_eq!(group(9999), "9999");
    assert_eq!(group(1_234_567), "1,234,567");
    assert_eq!(group(-20_000), "-20,000");
}

#[test]
fn log_stage_writes_a_record_and_refuses_bad_names() {
    let root = tempfile::tempdir().unwrap();
    let path = log_stage(
        root.path(),
        "base-eval",
        json!({"a": 1}),
        json!({"CORE": 0.2}),
    )
    .unwrap();
    assert_eq!(path, report_dir(root.path()).join("base-eval.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["stage"], "base-eval");
    assert_eq!(v["results"]["CORE"], 0.2);
    let time = v["time"].as_str().unwrap();
    assert!(time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T');
    for bad in ["", "../x", "a b", "x.json"] {
        assert!(
            matches!(
                log_stage(root.path(), bad, json!({}), json!({})),
                Err(CoreError::InvalidArgument {
                    name: "report stage name",
                    ..
                })
            ),
            "{bad}"
        );
    }
    // No temporary file is left behind.
    assert_eq!(
        std::fs::read_dir(report_dir(root.path())).unwrap().count(),
        1
    );
}

#[test]
fn generate_renders_sections_table_curves_and_wall_time() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let ckpt = r.join("base_checkpoints/d4");
    write_metrics(&ckpt, 6);
    let ck = ckpt.display().to_string();
    log_stage(r, "zz-extra", json!({}), json!({"note": "last"})).unwrap();
    log_stage(r, "aa-extra", json!({}), json!({"note": "first unknown"})).unwrap();
    log_stage(r, "speedrun", json!({}), json!({"wall_s": 3723.4})).unwrap();
    log_stage(r, "chat-eval-rl", json!({}), json!({"GSM8K": 0.0758})).unwrap();
    log_stage(
        r,
        "chat-eval-sft",
        json!({}),
        json!({"ARC-Easy": 0.3876, "MMLU": 0.3151, "SpellingBee": 0.98, "ChatCORE": 0.0884}),
    )
    .unwrap();
    log_stage(
        r,
        "chat-eval-mid",
        json!({}),
        json!({"ARC-Easy": 0.3561, "HumanEval": 0.0671}),
    )
    .unwrap();
    log_stage(
        r,
        "chat-eval-base",
        json!({}),
        json!({"ARC-Challenge": 0.25, "CORE": 0.9}),
    )
    .unwrap();
    log_stage(
        r,
        "base-eval",
        json!({"device": "cuda:0"}),
        json!({"CORE": 0.2219, "hellaswag": 0.3}),
    )
    .unwrap();
    log_stage(
        r,
        "base-train",
        json!({"checkpoint_dir": ck, "depth": 4, "lr": 0.00002, "nested": {"a": [1, 2]}}),
        json!({"final_loss": 2.5, "tokens_per_s": 123456, "steps": 6}),
    )
    .unwrap();
    log_stage(
        r,
        "tokenizer",
        json!({"vocab_size": 65536}),
        json!({"seconds": 1.5}),
    )
    .unwrap();

    let path = generate(r).unwrap();
    assert_eq!(path, report_dir(r).join("report.md"));
    let md = std::fs::read_to_string(&path).unwrap();
    // Sections in pipeline order, unknown stages last and alphabetically.
    let order = [
        "## Tokenizer training",
        "## Base model training",
        "## Base model evaluation",
        "## Chat evaluation (base)",
        "## Chat evaluation (mid)",
        "## Chat evaluation (SFT)",
        "## Chat evaluation (RL)",
        "## Speedrun",
        "## aa-extra",
        "## zz-extra",
        "## Summary",
    ];
    let pos: Vec<usize> = order
        .iter()
        .map(|h| md.find(h).unwrap_or_else(|| panic!("{h}")))
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
    // Header.
    assert!(md.starts_with("# nanochat training report"));
    for h in [
        "### Git",
        "### Hardware",
        "- Device: cuda:0",
        "### Software",
        "### Bloat",
    ] {
        assert!(md.contains(h), "{h}");
    }
    assert!(md.contains(&format!("- nanochat-rs: {}", env!("CARGO_PKG_VERSION"))));
    // Settings and results as bullets, numbers formatted.
    assert!(md.contains("- vocab_size: 65,536"));
    assert!(md.contains("- lr: 2.0000e-5"));
    assert!(md.contains("- nested:\n  - a: [1, 2]"));
    assert!(md.contains("- final_loss: 2.5000"));
    assert!(md.contains("- tokens_per_s: 123,456"));
    // The summary table: BASE takes base-eval's CORE over chat-eval-base's.
    assert_eq!(row(&md, "CORE"), ["0.2219", "-", "-", "-"]);
    assert_eq!(row(&md, "ARC-Easy"), ["-", "0.3561", "0.3876", "-"]);
    assert_eq!(row(&md, "ARC-Challenge"), ["0.2500", "-", "-", "-"]);
    assert_eq!(row(&md, "MMLU"), ["-", "-", "0.3151", "-"]);
    assert_eq!(row(&md, "GSM8K"), ["-", "-", "-", "0.0758"]);
    assert_eq!(row(&md, "HumanEval"), ["-", "0.0671", "-", "-"]);
    assert_eq!(row(&md, "SpellingBee"), ["-", "-", "0.9800", "-"]);
    assert_eq!(row(&md, "ChatCORE"), ["-", "-", "0.0884", "-"]);
    assert!(md.contains("Total wall clock time: 1h02m03s"));
    // The loss curve: 6 loss points (the null loss and the garbage line skipped), 3 val points.
    assert!(md.contains("![Base model training loss](base-train-loss.svg)"));
    assert!(md.contains("6 steps logged"));
    assert!(md.contains("last train loss 5.0000"));
    assert!(md.contains("best val bpb 2.5000"));
    assert!(md.contains("1 unreadable lines skipped"));
    let svg = std::fs::read_to_string(report_dir(r).join("base-train-loss.svg")).unwrap();
    assert_well_formed(&svg);
    assert_eq!(polylines(&svg), [6]);
    assert_eq!(svg.matches("<circle").count(), 3);
    assert!(svg.contains("Base model training: loss"));
    // Only stages with a checkpoint_dir get a curve.
    let svgs = std::fs::read_dir(report_dir(r))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".svg")
        })
        .count();
    assert_eq!(svgs, 1);
}

#[test]
fn corrupt_stage_files_and_missing_metrics_become_lines_not_errors() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    log_stage(
        r,
        "mid-train",
        json!({"checkpoint_dir": r.join("nowhere")}),
        json!({}),
    )
    .unwrap();
    log_stage(r, "chat-eval-sft", json!({}), json!({"GSM8K": 0.5})).unwrap();
    let bad = report_dir(r).join("base-eval.json");
    std::fs::write(&bad, "{\"stage\": \"base-eval\", \"resu").unwrap();
    std::fs::write(report_dir(r).join("chat-sft.json"), "[1, 2]").unwrap();
    let md = std::fs::read_to_string(generate(r).unwrap()).unwrap();
    assert!(md.contains(&format!(
        "**Error:** could not read stage file `{}`: not valid JSON",
        bad.display()
    )));
    assert!(md.contains("chat-sft.json`: not a JSON object"));
    assert!(md.contains("_No loss curve: `"));
    assert!(md.contains("## Midtraining"));
    assert_eq!(row(&md, "GSM8K"), ["-", "-", "0.5000", "-"]);
    assert_eq!(row(&md, "CORE"), ["-", "-", "-", "-"]);
    assert!(!md.contains("Total wall clock time"));
}

#[test]
fn generate_without_stages_and_reset() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    reset(r).unwrap(); // no folder yet
    let md = std::fs::read_to_string(generate_with_device(r, Some("cuda")).unwrap()).unwrap();
    assert!(md.contains("_No stage has logged"));
    assert!(md.contains("- Device: cuda"));
    let ckpt = r.join("ck");
    write_metrics(&ckpt, 3);
    log_stage(r, "chat-sft", json!({"checkpoint_dir": ckpt}), json!({})).unwrap();
    log_stage(r, "chat-eval-sft", json!({}), json!({"MMLU": 0.3})).unwrap();
    generate(r).unwrap();
    let dir = report_dir(r);
    std::fs::write(dir.join("keep.txt"), "not ours").unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 5);
    reset(r).unwrap();
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["keep.txt"]);
    // Relative checkpoint folders resolve from the root.
    log_stage(r, "chat-sft", json!({"checkpoint_dir": "ck"}), json!({})).unwrap();
    let md = std::fs::read_to_string(generate(r).unwrap()).unwrap();
    assert!(md.contains("](chat-sft-loss.svg)"), "{md}");
}

#[test]
fn svg_of_degenerate_series_is_well_formed() {
    let line = |points: &[(f64, f64)]| {
        line_chart(
            "t <&> \"q\"",
            "step",
            "loss",
            &[Series {
                label: "a&b",
                points,
                color: "#000",
                line: true,
            }],
        )
    };
    let empty = line(&[]);
    assert_well_formed(&empty);
    assert!(empty.contains("no data") && polylines(&empty).is_empty());
    assert!(empty.contains("t &lt;&amp;&gt; &quot;q&quot;") && empty.contains("a&amp;b"));
    let one = line(&[(5.0, 2.0)]);
    assert_well_formed(&one);
    assert_eq!(polylines(&one), [1]);
    assert_eq!(one.matches("<circle").count(), 1);
    let constant: Vec<_> = (0..10).map(|i| (i as f64, 3.0)).collect();
    let c = line(&constant);
    assert_well_formed(&c);
    assert_eq!(polylines(&c), [10]);
    let zeros: Vec<_> = (0..4).map(|_| (0.0, 0.0)).collect();
    assert_well_formed(&line(&zeros));
    let nan = [
        (0.0, f64::NAN),
        (1.0, 2.0),
        (2.0, f64::INFINITY),
        (3.0, 1.0),
        (f64::NAN, 1.0),
        (4.0, -1e308),
    ];
    let n = line(&nan);
    assert_well_formed(&n);
    assert_eq!(polylines(&n), [2]);
    assert!(!n.contains("NaN") && !n.contains("inf"));
    let only_nan = line(&[(0.0, f64::NAN)]);
    assert_well_formed(&only_nan);
    assert!(only_nan.contains("no data"));
    let tiny: Vec<_> = (0..5).map(|i| (i as f64 * 1e6, 1e-9 * i as f64)).collect();
    assert_well_formed(&line(&tiny));
    let long: Vec<_> = (0..10_001).map(|i| (i as f64, (i as f64).sqrt())).collect();
    let l = line(&long);
    assert_well_formed(&l);
    let kept = polylines(&l)[0];
    assert!(
        kept <= svg::MAX_POINTS + 1 && kept > svg::MAX_POINTS / 2,
        "{kept}"
    );
}

#[test]
fn chat_rl_stages_plot_the_mean_reward() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ckpt = root.join("rl_checkpoints/d1");
    std::fs::create_dir_all(&ckpt).unwrap();
    let lines: String = (1..=4)
        .map(|s| {
            let mut v = json!({"step": s, "mean_reward": 0.1 * s as f64, "mean_tokens": 20.0});
            if s % 2 == 0 {
                v["pass_at_1"] = json!(0.05 * s as f64);
            }
            format!("{v}\n")
        })
        .collect();
    std::fs::write(ckpt.join("metrics.jsonl"), lines).unwrap();
    log_stage(
        root,
        "chat-rl",
        json!({"checkpoint_dir": ckpt}),
        json!({"steps": 4}),
    )
    .unwrap();
    let md = std::fs::read_to_string(generate(root).unwrap()).unwrap();
    assert!(md.contains("![Chat RL reward](chat-rl-loss.svg)"), "{md}");
    assert!(md.contains("last mean reward 0.4000"), "{md}");
    assert!(md.contains("best test pass@1 0.2000"), "{md}");
    let svg = std::fs::read_to_string(report_dir(root).join("chat-rl-loss.svg")).unwrap();
    assert_well_formed(&svg);
    assert_eq!(polylines(&svg), vec![4]);
}
