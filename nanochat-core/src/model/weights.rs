//! Weights on disk: safetensors under nanochat's state_dict names (Linear weights (out, in)),
//! with the config as JSON in the file's metadata (`config`), so the files load in PyTorch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::{GPTConfig, GPT};
use crate::io::{format_err, read_safetensors, save_safetensors, HostTensor};
use crate::{DType, Device, Result};

impl GPT {
    /// Saves the parameters (in the model's dtype) and the config, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta = HashMap::from([
            ("config".to_string(), self.config().to_json()),
            ("format".to_string(), "nanochat-rs".to_string()),
        ]);
        save_safetensors(path, &self.named_parameters(), &meta)
    }

    /// Loads a model saved by [`GPT::save`] (or any file with nanochat's names and a `config`
    /// in its metadata), converting the weights to `dtype`.
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<GPT> {
        let file = read_safetensors(path)?;
        let p = path.display().to_string();
        let json = file
            .metadata
            .get("config")
            .ok_or_else(|| format_err(&p, "__metadata__.config", "missing: no model config"))?;
        let config = GPTConfig::from_json(json)
            .map_err(|e| format_err(&p, "__metadata__.config", e.to_string()))?;
        GPT::from_state_dict(config, &file.tensors, "", &p, device, dtype)
    }

    /// Builds a model from host tensors named `{prefix}{state_dict name}`. Every parameter of
    /// the config must be there with its shape, and nothing else under the prefix; errors name
    /// the file and the tensor.
    pub fn from_state_dict(
        config: GPTConfig,
        tensors: &BTreeMap<String, HostTensor>,
        prefix: &str,
        path: &str,
        device: &Device,
        dtype: DType,
    ) -> Result<GPT> {
        config
            .validate()
            .map_err(|e| format_err(path, "__metadata__.config", e.to_string()))?;
        let model = GPT::build(config, device, dtype, |name, shape, _| {
            let full = format!("{prefix}{name}");
            let t = tensors
                .get(&full)
                .ok_or_else(|| format_err(path, &full, "missing from the file"))?;
            if t.shape != shape {
                return Err(format_err(
                    path,
                    &full,
                    format!("shape {:?}, the config needs {shape:?}", t.shape),
                ));
            }
            t.to_device(device, dtype, path, &full)
        })?;
        let expected: HashSet<String> = model
            .named_parameters()
            .into_iter()
            .map(|(n, _)| format!("{prefix}{n}"))
            .collect();
        if let Some(extra) = tensors
            .keys()
            .filter(|k| k.starts_with(prefix))
            .find(|k| !expected.contains(*k))
        {
            return Err(format_err(path, extra, "not a parameter of this config"));
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ForwardOptions;
    use crate::Tensor;

    fn tiny(bias: bool) -> GPTConfig {
        crate::model::tests::two_layer_8(11, bias)
    }

    #[test]
    fn save_load_round_trip_with_and_without_bias() {
        let dev = Device::cpu().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for bias in [false, true] {
            let m = GPT::new(tiny(bias), &dev, DType::F32, 3).unwrap();
            let path = dir.path().join(format!("m{bias}.safetensors"));
            m.save(&path).unwrap();
            let f = read_safetensors(&path).unwrap();
            assert_eq!(
                f.tensors.contains_key("transformer.h.1.mlp.c_proj.bias"),
                bias
            );
            assert!(f.tensors.contains_key("transformer.h.0.attn.c_k.weight"));
            assert_eq!(
                f.tensors["transformer.h.0.attn.c_k.weight"].shape,
                vec![4, 8]
            );
            let back = GPT::load(&path, &dev, DType::F32).unwrap();
            assert_eq!(back.config(), m.config());
            let idx: Vec<u32> = (0..6).collect();
            let a = m
                .forward(&idx, (1, 6), ForwardOptions::new())
                .unwrap()
                .to_vec_f32()
                .unwrap();
            let b = back
                .forward(&idx, (1, 6), ForwardOptions::new())
                .unwrap()
                .to_vec_f32()
                .unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn mismatched_files_are_errors_naming_the_tensor() {
        let dev = Device::cpu().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let m = GPT::new(tiny(false), &dev, DType::F32, 3).unwrap();
        let path = dir.path().join("m.safetensors");
        m.save(&path).unwrap();
        let mut tensors = read_safetensors(&path).unwrap().tensors;
        // The error of loading `tensors` as a model of `config`.
        let load_error = |config, tensors: &BTreeMap<String, HostTensor>| {
            GPT::from_state_dict(config, tensors, "", "m.safetensors", &dev, DType::F32)
                .err()
                .unwrap()
                .to_string()
        };
        // A config the file does not match.
        let e = load_error(tiny(true), &tensors);
        assert!(
            e.contains("transformer.h.0.attn.c_q.bias") && e.contains("missing"),
            "{e}"
        );
        let wide = GPTConfig {
            n_embd: 12,
            n_head: 2,
            n_kv_head: 1,
            ..tiny(false)
        };
        let e = load_error(wide, &tensors);
        assert!(
            e.contains("transformer.wte.weight") && e.contains("shape"),
            "{e}"
        );
        tensors.insert(
            "transformer.h.9.attn.c_q.weight".into(),
            tensors["lm_head.weight"].clone(),
        );
        let e = load_error(tiny(false), &tensors);
        assert!(
            e.contains("transformer.h.9.attn.c_q.weight") && e.contains("not a parameter"),
            "{e}"
        );
        // A file without a config.
        let bare = dir.path().join("bare.safetensors");
        let t = Tensor::zeros(&dev, &[2], DType::F32).unwrap();
        save_safetensors(&bare, &[("x".into(), t)], &HashMap::new()).unwrap();
        assert!(GPT::load(&bare, &dev, DType::F32)
            .err()
            .unwrap()
            .to_string()
            .contains("no model config"));
    }
}
