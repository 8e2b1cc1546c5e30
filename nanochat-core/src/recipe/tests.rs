//! HEAD's schedules and scaling settings against `head_schedules.json` (HEAD's own functions'
//! values): integers exactly, floats to 1e-12.

use serde_json::Value;

use super::*;

pub(crate) fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/reference/head/head_schedules.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Each `auto_settings` entry of the fixture: its name, its JSON, and the `--depth` and
/// `--target-param-data-ratio` of its argv (the speedrun's gives the ratio 8).
pub(crate) fn auto_settings() -> Vec<(String, Value, usize, Option<f64>)> {
    let f = fixture();
    f["auto_settings"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, a)| {
            let argv: Vec<&str> = a["argv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let flag = |k: &str| argv.iter().position(|&x| x == k).map(|i| argv[i + 1]);
            let depth = flag("--depth").unwrap().parse().unwrap();
            let ratio = flag("--target-param-data-ratio").map(|r| r.parse().unwrap());
            (name.clone(), a.clone(), depth, ratio)
        })
        .collect()
}

fn close(what: &str, got: f64, want: &Value) {
    let want = want.as_f64().unwrap_or_else(|| panic!("{what}: {want}"));
    assert!(
        (got - want).abs() <= 1e-12 * want.abs().max(1.0),
        "{what}: {got} vs {want}"
    );
}

fn ints(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn python_rounding_is_half_to_even() {
    assert_eq!(
        (
            round_half_even(6.5),
            round_half_even(7.5),
            round_half_even(-0.5)
        ),
        (6, 8, 0)
    );
    assert_eq!(HeadSchedule::new(10, 0.0).warmdown_iters(), 6); // round(6.5)
}

#[test]
fn base_train_schedules_match_head() {
    let f = fixture();
    for key in ["base_train_100_steps", "base_train_1000_steps_sampled"] {
        let run = &f[key];
        let n = run["num_iterations"].as_u64().unwrap() as usize;
        let wd_scaled = run["weight_decay_scaled"].as_f64().unwrap_or(0.28);
        let s = HeadSchedule::new(n, wd_scaled);
        if let Some(w) = run["warmdown_iters"].as_u64() {
            assert_eq!(s.warmdown_iters(), w as usize);
        }
        let steps = ints(&run["steps"]);
        assert!(steps.len() >= 100, "{key}");
        for (i, &it) in steps.iter().enumerate() {
            close(
                &format!("{key} lrm({it})"),
                s.lr_multiplier(it),
                &run["lr_multiplier"][i],
            );
            close(
                &format!("{key} momentum({it})"),
                s.muon_momentum(it),
                &run["muon_momentum"][i],
            );
            close(
                &format!("{key} wd({it})"),
                s.muon_weight_decay(it),
                &run["muon_weight_decay"][i],
            );
        }
    }
}

#[test]
fn sft_schedules_match_head() {
    let f = fixture();
    let c = &f["chat_sft"];
    let s = SftSchedule::default();
    close("init_lr_frac", s.init_lr_frac, &c["init_lr_frac"]);
    for (i, p) in c["progress"].as_array().unwrap().iter().enumerate() {
        let p = p.as_f64().unwrap();
        close(
            &format!("sft lrm({p})"),
            s.lr_multiplier(p),
            &c["lr_multiplier"][i],
        );
    }
    for (i, it) in ints(&c["momentum_steps"]).into_iter().enumerate() {
        close(
            &format!("sft momentum({it})"),
            s.muon_momentum(it),
            &c["muon_momentum"][i],
        );
    }
}

#[test]
fn auto_settings_match_head_at_every_depth() {
    let f = fixture();
    let defaults = &f["base_train_cli_defaults"];
    for (name, a, depth, ratio) in auto_settings() {
        let (name, a) = (name.as_str(), &a);
        let args = HeadScalingArgs {
            depth,
            target_param_data_ratio: ratio.unwrap_or(12.0),
            ..HeadScalingArgs::default()
        };
        let s = HeadScaling::new(
            &args,
            None,
            Horizon::ParamDataRatio,
            defaults["weight_decay"].as_f64().unwrap(),
        );
        let mc = &a["model_config"];
        assert_eq!(
            (s.config.n_embd, s.config.n_head, s.config.n_kv_head),
            (
                mc["n_embd"].as_u64().unwrap() as usize,
                mc["n_head"].as_u64().unwrap() as usize,
                mc["n_kv_head"].as_u64().unwrap() as usize
            ),
            "{name}"
        );
        assert_eq!(
            s.config.padded_vocab_size(),
            a["padded_vocab_size"].as_u64().unwrap() as usize
        );
        let windows: Vec<usize> = a["window_sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w[0].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(s.config.window_sizes(), windows, "{name}");
        let pc = &a["param_counts"];
        let p = s.params;
        assert_eq!(
            [
                p.wte,
                p.value_embeds,
                p.lm_head,
                p.transformer_matrices,
                p.scalars,
                p.total()
            ],
            [
                "wte",
                "value_embeds",
                "lm_head",
                "transformer_matrices",
                "scalars",
                "total"
            ]
            .map(|k| pc[k].as_u64().unwrap() as usize),
            "{name}"
        );
        assert_eq!(
            p.scaling() as u64,
            a["num_scaling_params (transformer_matrices + lm_head)"]
                .as_u64()
                .unwrap()
        );
        assert_eq!(
            s.flops_per_token as u64,
            a["num_flops_per_token"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            s.target_tokens as u64,
            a["target_tokens"].as_u64().unwrap(),
            "{name}"
        );
        close(
            &format!("{name} D_REF"),
            s.d_ref,
            &a["D_REF (d12, same args)"],
        );
        assert_eq!(
            s.total_batch_size as u64,
            a["total_batch_size"].as_u64().unwrap(),
            "{name}"
        );
        close(
            &format!("{name} batch_lr_scale"),
            s.batch_lr_scale,
            &a["batch_lr_scale"],
        );
        close(
            &format!("{name} weight_decay_scaled"),
            s.weight_decay_scaled,
            &a["weight_decay_scaled"],
        );
        assert_eq!(
            s.num_iterations as u64,
            a["num_iterations"].as_u64().unwrap(),
            "{name}"
        );
        // The schedule samples of this run.
        let sched = HeadSchedule::new(s.num_iterations, s.weight_decay_scaled);
        assert_eq!(
            sched.warmdown_iters() as u64,
            a["warmdown_iters"].as_u64().unwrap()
        );
        for (it, v) in a["schedule_samples"].as_object().unwrap() {
            let it: usize = it.parse().unwrap();
            close(
                &format!("{name} lrm({it})"),
                sched.lr_multiplier(it),
                &v["lrm"],
            );
            close(
                &format!("{name} momentum({it})"),
                sched.muon_momentum(it),
                &v["muon_momentum"],
            );
            close(
                &format!("{name} wd({it})"),
                sched.muon_weight_decay(it),
                &v["muon_weight_decay"],
            );
        }
    }
}

#[test]
fn the_horizon_follows_base_trains_precedence() {
    let args = HeadScalingArgs {
        depth: 4,
        ..HeadScalingArgs::default()
    };
    let auto = HeadScaling::new(&args, None, Horizon::ParamDataRatio, 0.28);
    assert_eq!(auto.num_iterations, 528);
    let fixed = HeadScaling::new(&args, None, Horizon::Iterations(7), 0.28);
    assert_eq!(fixed.num_iterations, 7);
    // Target FLOPs: round(F / (flops per token * batch)).
    let f = auto.flops_per_token * auto.total_batch_size as f64 * 10.4;
    assert_eq!(
        HeadScaling::new(&args, None, Horizon::TargetFlops(f), 0.28).num_iterations,
        10
    );
    // A given batch size replaces the automatic one, and scales the rates with it.
    let b = HeadScaling::new(&args, Some(1 << 19), Horizon::ParamDataRatio, 0.28);
    assert_eq!((b.total_batch_size, b.batch_lr_scale), (1 << 19, 1.0));
}
