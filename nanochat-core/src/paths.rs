//! Where nanochat-rs reads and writes, decided once: every environment variable the project
//! reads goes through [`env_var`], and every default folder through a [`Paths`] value built once
//! (by the binary, from the environment) and passed down, so library code never reads the
//! environment on its own and parallel tests need no `set_var`.
//!
//! Precedence, written here once: a command-line flag, then the environment variable, then the
//! default. An environment variable set to the empty string counts as unset, as shells and most
//! tools treat it (`NANOCHAT_BASE_DIR= nanochat ...` is the default base dir, never the current
//! directory).
//!
//! | folder | flag | variable | default |
//! |---|---|---|---|
//! | base dir | | `NANOCHAT_BASE_DIR` | `$HOME/.cache/nanochat` (nanochat's `get_base_dir`) |
//! | model root (checkpoints, report) | | `NANOCHAT_MODEL_DIR` | the base dir |
//! | tokenizer | `--tokenizer` / `--output` | `NANOCHAT_TOKENIZER_PATH` | `<base dir>/tokenizer` |
//! | data (fetched corpora, eval sets) | | `NANOCHAT_DATA_DIR` | `<base dir>/data` |

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::{CoreError, Result};

/// The base directory variable (nanochat's own).
pub const BASE_DIR_VAR: &str = "NANOCHAT_BASE_DIR";
/// The model root variable (ours): where `*_checkpoints/` and `report/` go.
pub const MODEL_DIR_VAR: &str = "NANOCHAT_MODEL_DIR";
/// The tokenizer folder variable (ours).
pub const TOKENIZER_PATH_VAR: &str = "NANOCHAT_TOKENIZER_PATH";
/// The data folder variable (ours).
pub const DATA_DIR_VAR: &str = "NANOCHAT_DATA_DIR";

/// An environment variable, with the empty string read as unset.
pub fn env_var(name: &str) -> Option<OsString> {
    non_empty(std::env::var_os(name))
}

/// An environment variable as UTF-8 text (empty or not UTF-8: unset).
pub fn env_string(name: &str) -> Option<String> {
    env_var(name).and_then(|v| v.into_string().ok())
}

fn non_empty(v: Option<OsString>) -> Option<OsString> {
    v.filter(|v| !v.is_empty())
}

/// The folders of one process (see the module doc for the rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// nanochat's base directory: `$NANOCHAT_BASE_DIR`, else `$HOME/.cache/nanochat`.
    pub base_dir: PathBuf,
    /// Checkpoints and the report card: `$NANOCHAT_MODEL_DIR`, else the base dir.
    pub model_root: PathBuf,
    /// `$NANOCHAT_TOKENIZER_PATH`, when set: overrides `<base dir>/tokenizer` everywhere,
    /// including the tokenizer a checkpoint recorded.
    pub tokenizer_override: Option<PathBuf>,
    /// Fetched corpora and evaluation sets: `$NANOCHAT_DATA_DIR`, else `<base dir>/data`.
    pub data_dir: PathBuf,
}

impl Paths {
    /// The paths of this process's environment. Errors when neither `NANOCHAT_BASE_DIR` nor
    /// `HOME` is set (non-empty): there is no default to fall back on.
    pub fn from_env() -> Result<Paths> {
        Paths::from_vars(|name| std::env::var_os(name))
    }

    /// The paths given by a lookup of variables (empty values count as unset): the one place
    /// where the precedence is written.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Paths> {
        let get = |name: &str| non_empty(var(name)).map(PathBuf::from);
        let base_dir = match get(BASE_DIR_VAR) {
            Some(p) => p,
            None => match get("HOME") {
                Some(home) => home.join(".cache").join("nanochat"),
                None => {
                    return Err(CoreError::EnvNotSet {
                        vars: vec![BASE_DIR_VAR, "HOME"],
                        hint: "set NANOCHAT_BASE_DIR to the folder for models, tokenizer and data",
                    })
                }
            },
        };
        Ok(Paths {
            model_root: get(MODEL_DIR_VAR).unwrap_or_else(|| base_dir.clone()),
            tokenizer_override: get(TOKENIZER_PATH_VAR),
            data_dir: get(DATA_DIR_VAR).unwrap_or_else(|| base_dir.join("data")),
            base_dir,
        })
    }

    /// Every folder under one root (tests and embedders): base dir and model root `root`,
    /// `root/data`, no tokenizer override.
    pub fn under(root: &Path) -> Paths {
        Paths {
            base_dir: root.to_path_buf(),
            model_root: root.to_path_buf(),
            tokenizer_override: None,
            data_dir: root.join("data"),
        }
    }

    /// The default tokenizer folder: `$NANOCHAT_TOKENIZER_PATH`, else `<base dir>/tokenizer`.
    pub fn tokenizer_dir(&self) -> PathBuf {
        self.tokenizer_override
            .clone()
            .unwrap_or_else(|| self.base_dir.join("tokenizer"))
    }

    /// A flag's tokenizer folder when given, else [`Paths::tokenizer_dir`].
    pub fn tokenizer_dir_or(&self, flag: Option<&Path>) -> PathBuf {
        flag.map_or_else(|| self.tokenizer_dir(), Path::to_path_buf)
    }

    /// Whether `path` lies inside the base dir or the model root (compared lexically after
    /// making both absolute): a stage writing outside them does not write their report card.
    pub fn is_inside(&self, path: &Path) -> bool {
        let p = absolute(path);
        p.starts_with(absolute(&self.base_dir)) || p.starts_with(absolute(&self.model_root))
    }

    /// How a checkpoint records `path`: relative to the model root when inside it (so the
    /// folder can move), else absolute.
    pub fn record(&self, path: &Path) -> String {
        record_under(&self.model_root, path)
    }

    /// How a checkpoint records the tokenizer it was trained with: nothing for the default
    /// `<base dir>/tokenizer` (loading looks there first, wherever the base dir has moved;
    /// recording it would put an absolute path in the meta when the model root is elsewhere),
    /// else [`Paths::record`].
    pub fn record_tokenizer(&self, dir: &Path) -> Option<String> {
        if self.tokenizer_override.is_none()
            && absolute(dir) == absolute(&self.base_dir.join("tokenizer"))
        {
            None
        } else {
            Some(self.record(dir))
        }
    }

    /// The path a checkpoint recorded with [`Paths::record`]: relative ones are under the model
    /// root.
    pub fn resolve(&self, recorded: &str) -> PathBuf {
        let p = Path::new(recorded);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.model_root.join(p)
        }
    }
}

static INSTALLED: std::sync::OnceLock<Paths> = std::sync::OnceLock::new();

/// Makes `paths` this process's paths, for the few library corners that have no caller to pass
/// them (task data under [`Paths::data_dir`]). The binary installs the value it built from the
/// environment at start; the first value installed wins. Returns the installed value.
pub fn install(paths: Paths) -> &'static Paths {
    INSTALLED.get_or_init(|| paths)
}

/// The installed paths, else (a library used without [`install`]) those of the environment,
/// built once.
pub fn installed() -> Result<&'static Paths> {
    if let Some(p) = INSTALLED.get() {
        return Ok(p);
    }
    // This crate's own unit tests never read the environment: an empty folder of their own.
    #[cfg(test)]
    let paths = Paths::under(&std::env::temp_dir().join("nanochat-core-unit-tests-no-data"));
    #[cfg(not(test))]
    let paths = Paths::from_env()?;
    Ok(install(paths))
}

/// `path` relative to `root` when inside it (`.` for `root` itself), else absolute: how
/// checkpoints record paths so that their folder can move ([`Paths::record`]).
pub fn record_under(root: &Path, path: &Path) -> String {
    let p = absolute(path);
    match p.strip_prefix(absolute(root)) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => p.display().to_string(),
    }
}

/// `path` made absolute against the current directory and cleaned of `.` and `..` lexically
/// (no file system access: the path need not exist).
pub fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn paths(vars: &[(&str, &str)]) -> Result<Paths> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Paths::from_vars(|name| map.get(name).cloned())
    }

    /// HOME=/home/u and the base, model, tokenizer and data variables set to `values`.
    fn with_home(values: [&str; 4]) -> Vec<(&str, &str)> {
        let names = [
            "NANOCHAT_BASE_DIR",
            "NANOCHAT_MODEL_DIR",
            "NANOCHAT_TOKENIZER_PATH",
            "NANOCHAT_DATA_DIR",
        ];
        std::iter::once(("HOME", "/home/u"))
            .chain(names.into_iter().zip(values))
            .collect()
    }

    #[test]
    fn defaults_follow_home() {
        let p = paths(&[("HOME", "/home/u")]).unwrap();
        assert_eq!(p.base_dir, PathBuf::from("/home/u/.cache/nanochat"));
        assert_eq!(p.model_root, p.base_dir);
        assert_eq!(
            p.tokenizer_dir(),
            PathBuf::from("/home/u/.cache/nanochat/tokenizer")
        );
        assert_eq!(p.data_dir, PathBuf::from("/home/u/.cache/nanochat/data"));
    }

    #[test]
    fn variables_override_defaults() {
        let p = paths(&with_home(["/b", "/m", "/t", "/d"])).unwrap();
        assert_eq!(p.base_dir, PathBuf::from("/b"));
        assert_eq!(p.model_root, PathBuf::from("/m"));
        assert_eq!(p.tokenizer_dir(), PathBuf::from("/t"));
        assert_eq!(p.data_dir, PathBuf::from("/d"));
        // A flag beats the variable.
        assert_eq!(
            p.tokenizer_dir_or(Some(Path::new("/flag"))),
            PathBuf::from("/flag")
        );
        assert_eq!(p.tokenizer_dir_or(None), PathBuf::from("/t"));
        // Without the model and data variables, both follow the base dir.
        let p = paths(&[("NANOCHAT_BASE_DIR", "/b")]).unwrap();
        assert_eq!(p.model_root, PathBuf::from("/b"));
        assert_eq!(p.tokenizer_dir(), PathBuf::from("/b/tokenizer"));
        assert_eq!(p.data_dir, PathBuf::from("/b/data"));
    }

    /// Issue 12.9: an empty variable is unset, never the path "".
    #[test]
    fn empty_variables_are_unset() {
        let p = paths(&with_home(["", "", "", ""])).unwrap();
        assert_eq!(p, paths(&[("HOME", "/home/u")]).unwrap());
        assert_eq!(p.model_root, PathBuf::from("/home/u/.cache/nanochat"));
        let e = paths(&[("HOME", ""), ("NANOCHAT_BASE_DIR", "")]).unwrap_err();
        assert!(
            matches!(&e, CoreError::EnvNotSet { vars, .. } if vars == &["NANOCHAT_BASE_DIR", "HOME"]),
            "{e:?}"
        );
        assert!(e.to_string().contains("NANOCHAT_BASE_DIR"), "{e}");
    }

    #[test]
    fn recorded_paths_are_relative_to_the_model_root() {
        let p = Paths::under(Path::new("/runs/a"));
        assert_eq!(p.record(Path::new("/runs/a/tokenizer")), "tokenizer");
        assert_eq!(p.record_tokenizer(Path::new("/runs/a/tokenizer")), None);
        assert_eq!(
            p.record_tokenizer(Path::new("/runs/a/tok2")).as_deref(),
            Some("tok2")
        );
        assert_eq!(p.record(Path::new("/runs/a/x/../tokenizer")), "tokenizer");
        assert_eq!(p.record(Path::new("/elsewhere/tok")), "/elsewhere/tok");
        let moved = Paths::under(Path::new("/runs/b"));
        assert_eq!(
            moved.resolve("tokenizer"),
            PathBuf::from("/runs/b/tokenizer")
        );
        assert_eq!(
            moved.resolve("/elsewhere/tok"),
            PathBuf::from("/elsewhere/tok")
        );
        assert!(p.is_inside(Path::new("/runs/a/report")));
        assert!(!p.is_inside(Path::new("/runs/ab")));
        assert!(!p.is_inside(Path::new("/tmp/out")));
    }
}
