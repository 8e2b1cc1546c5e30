//! Checkpoint discovery: the fine-tuning source with chat-sft's mid -> base fallback, the tag a
//! model was loaded from, and the model file of a folder.

use std::time::{Duration, SystemTime};

use super::*;
use crate::checkpoint::{save_checkpoint, SaveInfo};

/// A model root holding the small tokenizer; [`Root::save`] commits an untrained tiny model.
struct Root {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dev: Device,
    model: GPT,
}

impl Root {
    fn new() -> Root {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        crate::tokenizer::tests::small_tokenizer()
            .save(&root.join("tokenizer"))
            .unwrap();
        let dev = Device::cpu().unwrap();
        let model = GPT::new(crate::checkpoint::tests::tiny(), &dev, DType::F32, 1).unwrap();
        Root {
            _tmp: tmp,
            root,
            dev,
            model,
        }
    }

    fn paths(&self) -> Paths {
        Paths::under(&self.root)
    }

    /// Commits `step` of `phase`'s model `tag`; its meta file is dated `age` ago.
    fn save(&self, phase: Phase, tag: &str, step: u64, age: Duration) {
        let tok = crate::tokenizer::tests::small_tokenizer();
        let info = SaveInfo {
            tokenizer_path: Some(crate::paths::record_under(
                &self.root,
                &self.root.join("tokenizer"),
            )),
            tokenizer_sha256: Some(tok.fingerprint().unwrap()),
            ..SaveInfo::default()
        };
        let dir = checkpoint_dir(&self.root, phase, tag);
        save_checkpoint(&dir, phase, step, &self.model, None, info).unwrap();
        std::fs::File::options()
            .write(true)
            .open(meta_path(&dir, step))
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
    }

    fn source(&self, trained: Phase, source: Option<Phase>) -> Result<(Phase, String, u64)> {
        let (m, tag) = load_source(
            &self.paths(),
            trained,
            source,
            &self.dev,
            &CheckpointQuery::default(),
        )?;
        Ok((m.phase, tag, m.meta.step))
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn sft_starts_from_mid_else_base_and_a_named_source_only_from_it() {
    let r = Root::new();
    // Nothing at all: the last phase tried (base) is the error.
    let e = r.source(Phase::Sft, None).unwrap_err();
    assert!(
        matches!(
            &e,
            CoreError::CheckpointNotFound {
                phase: Phase::Base,
                tag: None,
                ..
            }
        ),
        "{e:?}"
    );
    r.save(Phase::Base, "d1", 4, HOUR);
    assert_eq!(
        r.source(Phase::Sft, None).unwrap(),
        (Phase::Base, "d1".into(), 4)
    );
    r.save(Phase::Mid, "m", 2, Duration::ZERO);
    assert_eq!(
        r.source(Phase::Sft, None).unwrap(),
        (Phase::Mid, "m".into(), 2)
    );
    // Mid-training starts from base; a named source is the only one tried.
    assert_eq!(
        r.source(Phase::Mid, None).unwrap(),
        (Phase::Base, "d1".into(), 4)
    );
    let e = r.source(Phase::Sft, Some(Phase::Rl)).unwrap_err();
    assert!(
        matches!(
            &e,
            CoreError::CheckpointNotFound {
                phase: Phase::Rl,
                ..
            }
        ),
        "{e:?}"
    );
    let query = CheckpointQuery {
        model_tag: Some("m"),
        step: Some(2),
        force_tokenizer: false,
    };
    let (m, tag) = load_source(&r.paths(), Phase::Sft, None, &r.dev, &query).unwrap();
    assert_eq!((m.phase, tag.as_str(), m.meta.step), (Phase::Mid, "m", 2));
    assert_eq!(m.root, r.root);
    assert_eq!(
        source_phases(Phase::Rl, None),
        vec![Phase::Base],
        "only SFT falls back"
    );
}

/// Two tags holding the same step: the tag named is the one loaded (the newest), not the first
/// by name.
#[test]
fn the_tag_of_a_loaded_model_is_the_folder_it_was_loaded_from() {
    let r = Root::new();
    r.save(Phase::Base, "a", 1, HOUR);
    r.save(Phase::Base, "b", 1, Duration::ZERO);
    let (_, tag, _) = r.source(Phase::Mid, None).unwrap();
    assert_eq!(tag, "b");
    let m = load_phase(&r.paths(), Phase::Base, &r.dev, &CheckpointQuery::default()).unwrap();
    assert_eq!(root_tag(&r.root, Phase::Base, None, &m.meta), "b");
    // A given tag is kept; a step no folder holds falls back to d<n_layer>.
    assert_eq!(root_tag(&r.root, Phase::Base, Some("x"), &m.meta), "x");
    let mut other = m.meta.clone();
    other.step = 9;
    assert_eq!(root_tag(&r.root, Phase::Base, None, &other), "d1");
}

#[test]
fn a_folder_model_is_model_safetensors_else_the_only_one() {
    let r = Root::new();
    let dir = r.root.join("hf");
    let e = folder_model_file(&dir).unwrap_err();
    assert!(
        matches!(&e, CoreError::Io { path, .. } if path == &dir),
        "{e:?}"
    );
    std::fs::create_dir_all(&dir).unwrap();
    let e = folder_model_file(&dir).unwrap_err();
    assert!(
        matches!(&e, CoreError::NoData { what: ".safetensors file", within } if within == &dir.display().to_string()),
        "{e:?}"
    );
    r.model.save(&dir.join("x.safetensors")).unwrap();
    assert_eq!(folder_model_file(&dir).unwrap(), dir.join("x.safetensors"));
    std::fs::copy(dir.join("x.safetensors"), dir.join("y.safetensors")).unwrap();
    let e = folder_model_file(&dir).unwrap_err();
    assert!(
        matches!(&e, CoreError::File { path, why } if path == &dir.display().to_string() && why.contains("several")),
        "{e:?}"
    );
    std::fs::copy(dir.join("x.safetensors"), dir.join("model.safetensors")).unwrap();
    assert_eq!(
        folder_model_file(&dir).unwrap(),
        dir.join("model.safetensors")
    );
    // Without a tokenizer.json of its own, the base dir's tokenizer is used.
    let (model, tok) = load_folder_model(&r.paths(), &dir, &r.dev).unwrap();
    assert_eq!(model.config(), r.model.config());
    assert_eq!(tok.vocab_size(), 1000);
}
