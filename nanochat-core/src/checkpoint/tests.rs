//! Checkpoint round trips and every failure a user can meet: missing source, tag or step,
//! uncommitted steps, truncated and corrupt files.

use super::*;
use crate::model::ForwardOptions;
use crate::ops::Reduction;
use crate::optim::{OptimConfig, Optimizer};
use crate::Tape;

pub(super) fn tiny() -> GPTConfig {
    GPTConfig {
        vocab_size: 1000,
        n_layer: 1,
        n_head: 2,
        n_kv_head: 1,
        n_embd: 16,
        block_size: 8,
        ..GPTConfig::default()
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
    model: GPT,
    optim: Optimizer,
    dev: Device,
}

/// A 300-token tokenizer trained on `text` repeated: not the setup's.
fn other_tokenizer(text: &str) -> Tokenizer {
    let opts = crate::tokenizer::TrainOptions {
        vocab_size: 300,
        doc_cap: 10_000,
        max_chars: 100_000,
        progress: false,
    };
    crate::tokenizer::train_tokenizer(&[text.repeat(40)], &opts)
        .unwrap()
        .0
}

impl Setup {
    /// [`load_model`] from this setup's root, the tokenizer checked.
    fn load(
        &self,
        phase: Phase,
        tag: Option<&str>,
        step: Option<u64>,
    ) -> Result<(GPT, Tokenizer, Meta)> {
        load_model(
            &Paths::under(&self.root),
            phase,
            &self.dev,
            tag,
            step,
            false,
        )
    }
}

/// A model trained one step, saved as step 1 of base model `d1` with its tokenizer.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let dev = Device::cpu().unwrap();
    let tok = crate::tokenizer::tests::small_tokenizer();
    let tok_dir = root.join("tokenizer");
    tok.save(&tok_dir).unwrap();
    let model = GPT::new(tiny(), &dev, DType::F32, 1).unwrap();
    let mut optim = Optimizer::new(&model, &OptimConfig::default());
    let tape = Tape::new();
    for (_, p) in model.named_parameters() {
        tape.watch(&p);
    }
    let idx: Vec<u32> = (0..8).collect();
    let tg: Vec<i32> = (1..9).collect();
    let loss = model
        .forward(
            &idx,
            (1, 8),
            ForwardOptions::new()
                .tape(&tape)
                .targets(&tg, Reduction::Mean),
        )
        .unwrap();
    optim
        .step(&tape.backward(&loss).unwrap(), 1.0, 0.9)
        .unwrap();
    let dir = checkpoint_dir(&root, Phase::Base, "d1");
    let info = SaveInfo {
        val_bpb: Some(3.5),
        tokenizer_path: Some(crate::paths::record_under(&root, &tok_dir)),
        tokenizer_sha256: Some(tok.fingerprint().unwrap()),
        data_position: Some(LoaderState {
            epoch: 0,
            source: 0,
            offset: 8,
        }),
        data_buffer: None,
        rng_state: 7,
        run: serde_json::json!({"lr": 0.02}),
        world_size: 1,
    };
    save_checkpoint(&dir, Phase::Base, 1, &model, Some(&optim), info).unwrap();
    Setup {
        _tmp: tmp,
        root,
        dir,
        model,
        optim,
        dev,
    }
}

#[test]
fn round_trip_model_optimizer_and_meta() {
    let s = setup();
    let (model, tok, meta) = s.load(Phase::Base, None, None).unwrap();
    assert_eq!(meta.step, 1);
    assert_eq!(meta.val_bpb, Some(3.5));
    assert_eq!(meta.data_position.unwrap().offset, 8);
    assert_eq!(meta.rng_state, 7);
    assert_eq!(tok.vocab_size(), 1000);
    for ((n, a), (_, b)) in s
        .model
        .named_parameters()
        .iter()
        .zip(model.named_parameters())
    {
        assert_eq!(a.to_vec_f32().unwrap(), b.to_vec_f32().unwrap(), "{n}");
    }
    let mut fresh = Optimizer::new(&model, &OptimConfig::default());
    load_optimizer_state(&s.dir, &meta, &model, &mut fresh, &s.dev).unwrap();
    assert_eq!(fresh.steps(), 1);
    let a = s.optim.state_tensors();
    let b = fresh.state_tensors();
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert_eq!(ta.to_vec_f32().unwrap(), tb.to_vec_f32().unwrap(), "{na}");
    }
}

#[test]
fn missing_source_tag_and_step_list_what_exists() {
    let s = setup();
    let e = s.load(Phase::Sft, None, None).unwrap_err();
    assert!(
        matches!(&e, CoreError::CheckpointNotFound { phase: Phase::Sft, tag: None, tags, .. } if tags.is_empty()),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("no sft checkpoints") && e.contains("nanochat chat-sft"),
        "{e}"
    );
    let e = s.load(Phase::Base, Some("d9"), None).unwrap_err();
    assert!(
        matches!(&e, CoreError::CheckpointNotFound { phase: Phase::Base, tag: Some(t), tags, .. } if t == "d9" && tags == &["d1"]),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(e.contains("`d9`") && e.contains("[\"d1\"]"), "{e}");
    let e = s.load(Phase::Base, Some("d1"), Some(5)).unwrap_err();
    assert!(
        matches!(&e, CoreError::StepNotFound { step: Some(5), steps, dir } if steps == &[1] && dir == &s.dir),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(e.contains("no step 5") && e.contains("[1]"), "{e}");
    // A step that was never committed, asked of read_meta directly, lists the committed ones.
    assert!(matches!(
        read_meta(&s.dir, 7),
        Err(CoreError::StepNotFound { step: Some(7), steps, .. }) if steps == [1]
    ));
    assert!(matches!(
        Phase::parse("final"),
        Err(CoreError::Unknown { kind: "source", name, .. }) if name == "final"
    ));
}

#[test]
fn a_step_without_its_meta_file_does_not_exist() {
    let s = setup();
    // Step 2's model written, then a crash before its meta.
    s.model
        .save(&s.dir.join("model_000002.safetensors"))
        .unwrap();
    assert_eq!(list_steps(&s.dir), vec![1]);
    let (_, _, meta) = s.load(Phase::Base, None, None).unwrap();
    assert_eq!(meta.step, 1);
}

#[test]
fn truncated_and_corrupt_files_are_errors_naming_them() {
    let s = setup();
    let mp = s.dir.join("model_000001.safetensors");
    let bytes = std::fs::read(&mp).unwrap();
    std::fs::write(&mp, &bytes[..bytes.len() - 100]).unwrap();
    let e = s.load(Phase::Base, None, None).unwrap_err().to_string();
    assert!(
        e.contains("model_000001.safetensors") && e.contains("truncated"),
        "{e}"
    );
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    std::fs::write(&mp, &flipped).unwrap();
    let e = s.load(Phase::Base, None, None).unwrap_err().to_string();
    assert!(e.contains("corrupt"), "{e}");
    std::fs::write(&mp, &bytes).unwrap();
    let op = s.dir.join("optim_000001.bin");
    std::fs::write(&op, b"garbage").unwrap();
    let (model, _, meta) = s.load(Phase::Base, None, None).unwrap();
    let mut o = Optimizer::new(&model, &OptimConfig::default());
    let e = load_optimizer_state(&s.dir, &meta, &model, &mut o, &s.dev)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("optim_000001.bin") && e.contains("truncated"),
        "{e}"
    );
    std::fs::write(s.dir.join("meta_000001.json"), b"{\"format\":").unwrap();
    let e = s.load(Phase::Base, None, None).unwrap_err().to_string();
    assert!(
        e.contains("meta_000001.json") && e.contains("corrupt meta"),
        "{e}"
    );
}

/// A meta claiming a model far too large for the machine is refused before its weights file
/// is read (here the file is not even there), naming the model; an invalid config is blamed on
/// the meta; a bad tag is refused by name.
#[test]
fn a_meta_claiming_too_large_a_model_is_refused_before_reading_the_weights() {
    let s = setup();
    let mp = s.dir.join("meta_000001.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mp).unwrap()).unwrap();
    meta["config"]["vocab_size"] = serde_json::json!(1u64 << 31);
    std::fs::write(&mp, serde_json::to_string(&meta).unwrap()).unwrap();
    std::fs::remove_file(s.dir.join("model_000001.safetensors")).unwrap();
    let e = s.load(Phase::Base, None, None).unwrap_err();
    assert!(matches!(e, CoreError::ModelTooLarge { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("vocab_size 2147483648") && msg.contains("to load its checkpoint"),
        "{msg}"
    );
    // An invalid config is blamed on the meta file it came from.
    meta["config"]["vocab_size"] = serde_json::json!(64);
    meta["config"]["n_head"] = serde_json::json!(0);
    std::fs::write(&mp, serde_json::to_string(&meta).unwrap()).unwrap();
    let msg = s.load(Phase::Base, None, None).unwrap_err().to_string();
    assert!(
        msg.contains("meta_000001.json") && msg.contains("n_head"),
        "{msg}"
    );
    for bad in ["", ".", "..", "../tokenizer", "/tmp/x", "a\\b"] {
        let e = validate_tag(bad).unwrap_err().to_string();
        assert!(e.contains("--model-tag"), "{bad:?}: {e}");
    }
    for good in ["d1", "d4.earlier-20261201T101525Z", "my run", "..x"] {
        validate_tag(good).unwrap();
    }
}

/// Issue 12.4: a checkpoint records its tokenizer relative to the model root, so the whole
/// folder can move; the fingerprint makes the moved folder's tokenizer provably the same.
#[test]
fn a_moved_model_root_still_loads_its_tokenizer() {
    let s = setup();
    let meta = read_meta(&s.dir, 1).unwrap();
    assert_eq!(meta.tokenizer_path.as_deref(), Some("tokenizer"));
    let fp = meta.tokenizer_sha256.clone().unwrap();
    let moved = s._tmp.path().with_extension("moved");
    std::fs::rename(&s.root, &moved).unwrap();
    let (_, tok, meta2) = load_model(
        &Paths::under(&moved),
        Phase::Base,
        &s.dev,
        None,
        None,
        false,
    )
    .unwrap();
    assert_eq!(tok.fingerprint().unwrap(), fp);
    assert_eq!(meta2.step, 1);
    std::fs::rename(&moved, &s.root).unwrap();
}

/// Issue 12.4: a different tokenizer where the model's was is refused, naming both files and
/// both fingerprints; `force` loads it anyway.
#[test]
fn a_swapped_tokenizer_is_refused_unless_forced() {
    let s = setup();
    let want = read_meta(&s.dir, 1).unwrap().tokenizer_sha256.unwrap();
    let other = other_tokenizer("a different text about cats and 42 dogs. ");
    let have = other.fingerprint().unwrap();
    let other_vocab = other.vocab_size();
    assert_ne!(other_vocab, 1000);
    other.save(&s.root.join("tokenizer")).unwrap();
    let paths = Paths::under(&s.root);
    let e = load_model(&paths, Phase::Base, &s.dev, None, None, false).unwrap_err();
    match &e {
        CoreError::TokenizerMismatch {
            model,
            tokenizer,
            why,
        } => {
            assert!(model.ends_with("meta_000001.json"), "{model}");
            assert!(tokenizer.ends_with("tokenizer"), "{tokenizer}");
            assert!(why.contains(&want) && why.contains(&have), "{why}");
            assert!(why.contains("--force-tokenizer"), "{why}");
        }
        other => panic!("expected a tokenizer mismatch, got {other}"),
    }
    let (_, tok, _) = load_model(&paths, Phase::Base, &s.dev, None, None, true).unwrap();
    assert_eq!(tok.vocab_size(), other_vocab);
    // NANOCHAT_TOKENIZER_PATH (the override) is checked the same way.
    let paths = Paths {
        tokenizer_override: Some(s.root.join("tokenizer")),
        ..Paths::under(Path::new("/nonexistent"))
    };
    let paths = Paths {
        model_root: s.root.clone(),
        ..paths
    };
    assert!(matches!(
        load_model(&paths, Phase::Base, &s.dev, None, None, false),
        Err(CoreError::TokenizerMismatch { .. })
    ));
}

/// Checkpoints without a fingerprint (older ones, nanochat's) are checked on vocabulary size
/// (equal or padded to 64) and BOS id.
#[test]
fn without_a_fingerprint_vocabulary_and_bos_are_checked() {
    let s = setup();
    let tok = crate::tokenizer::tests::small_tokenizer();
    let mut meta = read_meta(&s.dir, 1).unwrap();
    meta.tokenizer_sha256 = None;
    let file = s.dir.join("meta_000001.json");
    let tok_file = s.root.join("tokenizer");
    check_tokenizer(&meta, &file, tok, &tok_file, false).unwrap();
    meta.config.vocab_size = 1024; // 1000 padded to a multiple of 64
    check_tokenizer(&meta, &file, tok, &tok_file, false).unwrap();
    meta.config.vocab_size = 1100;
    let e = check_tokenizer(&meta, &file, tok, &tok_file, false).unwrap_err();
    assert!(
        matches!(&e, CoreError::TokenizerMismatch { why, .. } if why.contains("1100") && why.contains("1000")),
        "{e}"
    );
    check_tokenizer(&meta, &file, tok, &tok_file, true).unwrap();
    // An old meta file without the key still reads.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object_mut().unwrap().remove("tokenizer_sha256");
    let old: Meta = serde_json::from_value(v).unwrap();
    assert_eq!(old.tokenizer_sha256, None);
}

/// A model trained with a tokenizer of its own (recorded `custom`) finds it even when the base
/// dir's `tokenizer/` holds another; with neither matching, the error names the base dir's.
#[test]
fn a_recorded_tokenizer_is_found_beside_another_default() {
    let s = setup();
    let mut meta = read_meta(&s.dir, 1).unwrap();
    meta.tokenizer_path = Some("custom".into());
    std::fs::write(
        s.dir.join("meta_000001.json"),
        serde_json::to_vec_pretty(&meta).unwrap(),
    )
    .unwrap();
    std::fs::rename(s.root.join("tokenizer"), s.root.join("custom")).unwrap();
    let other = other_tokenizer("yet another text, of 7 birds and 9 fish. ");
    other.save(&s.root.join("tokenizer")).unwrap();
    let paths = Paths::under(&s.root);
    assert_eq!(tokenizer_for(&paths, &meta), s.root.join("custom"));
    let (_, tok, _) = s.load(Phase::Base, None, None).unwrap();
    assert_eq!(tok.vocab_size(), 1000);
    std::fs::remove_dir_all(s.root.join("custom")).unwrap();
    assert_eq!(tokenizer_for(&paths, &meta), s.root.join("tokenizer"));
    match s.load(Phase::Base, None, None).unwrap_err() {
        CoreError::TokenizerMismatch { tokenizer, .. } => {
            assert_eq!(tokenizer, s.root.join("tokenizer").display().to_string())
        }
        e => panic!("expected a tokenizer mismatch, got {e}"),
    }
}

/// What loading a checkpoint holds at its peak, checked before reading: the file, the values
/// as read (f32 from f32 and bf16 files, f64 from f64 ones) and the model's own copy on the CPU
/// (on a GPU that copy is the device's).
#[test]
fn the_load_estimate_counts_the_file_the_values_and_the_model() {
    let dev = Device::cpu().unwrap();
    let n = tiny().num_params();
    // An f32 file (4n bytes) loaded as f32, and as bf16.
    assert_eq!(load_peak_bytes(n, 4 * n, &dev, DType::F32), 12 * n);
    assert_eq!(load_peak_bytes(n, 4 * n, &dev, DType::BF16), 10 * n);
    // nanochat's bf16 .pt (2n bytes): its values still take 4n.
    assert_eq!(load_peak_bytes(n, 2 * n, &dev, DType::F32), 10 * n);
    // An f64 file: values as large as the file.
    assert_eq!(load_peak_bytes(n, 8 * n, &dev, DType::F32), 20 * n);
    assert_eq!(load_peak_bytes(u64::MAX, 1, &dev, DType::F32), u64::MAX);
}
