//! Reproducing nanochat's own numbers: a fixture made by nanochat's PyTorch GPT in float64
//! (config, weights, inputs, logits, loss, every gradient, and one Muon Newton-Schulz pair) is
//! run through our model in f32 on any device, and each result is compared by relative L2
//! error `|ours - theirs| / |theirs|`.

use std::collections::BTreeMap;
use std::path::Path;

use nanochat_kernels::check::errors;
use nanochat_kernels::optim::newton_schulz;
use serde_json::{json, Value};

use crate::io::{format_err, parse_safetensors, SafetensorsFile};
use crate::model::{ForwardOptions, GPTConfig, GPT};
use crate::ops::{self, Reduction};
use crate::{CoreError, DType, Device, Result, Tape, Tensor};

/// The agreement an f32 implementation must reach on every compared quantity.
pub const TOLERANCE: f64 = 1e-4;

/// Relative L2 errors of one fixture.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    /// The fixture's path (or the name given to [`verify_reference_bytes`]).
    pub file: String,
    /// The device it ran on (`cpu`, `cuda:0`).
    pub device: String,
    /// The model configuration from the fixture's `__metadata__.config`.
    pub config: GPTConfig,
    /// Our mean cross-entropy loss (nats per token) on the fixture's inputs.
    pub loss: f64,
    /// nanochat's loss (`output.loss`).
    pub reference_loss: f64,
    /// Relative L2 error of our logits (B, T, vocab) against `output.logits`.
    pub logits_rel_err: f64,
    /// `|loss - reference_loss| / |reference_loss|`.
    pub loss_rel_err: f64,
    /// Per parameter (state_dict name).
    pub grads_rel_err: BTreeMap<String, f64>,
    /// The worst of logits, loss and gradients.
    pub max_rel_err: f64,
    /// Newton-Schulz on `muon.input` against `muon.ns5` (when the fixture has them).
    pub muon_rel_err: Option<f64>,
}

impl VerifyReport {
    /// Whether every error, Muon's included, is within [`TOLERANCE`].
    pub fn passed(&self) -> bool {
        self.max_rel_err <= TOLERANCE && self.muon_rel_err.is_none_or(|e| e <= TOLERANCE)
    }

    /// The report as `nanochat verify-reference` prints it: every field, plus
    /// `tolerance` and `passed`.
    pub fn to_json(&self) -> Value {
        json!({
            "file": self.file,
            "device": self.device,
            "config": serde_json::to_value(&self.config).expect("config serialises"),
            "loss": self.loss,
            "reference_loss": self.reference_loss,
            "logits_rel_err": self.logits_rel_err,
            "loss_rel_err": self.loss_rel_err,
            "grads_rel_err": self.grads_rel_err,
            "max_rel_err": self.max_rel_err,
            "muon_rel_err": self.muon_rel_err,
            "tolerance": TOLERANCE,
            "passed": self.passed(),
        })
    }
}

/// Verifies the fixture file at `path` ([`verify_reference_bytes`]); [`CoreError::Io`] when it
/// cannot be read.
pub fn verify_reference(path: &Path, device: &Device) -> Result<VerifyReport> {
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    verify_reference_bytes(&bytes, &path.display().to_string(), device)
}

fn rel(got: &[f32], want: &[f64]) -> f64 {
    errors(got, want).0
}

/// Verifies fixture bytes (`name` labels the report and errors), on the device's thread.
/// Errors: [`CoreError::File`] for bytes that are not safetensors; [`CoreError::Format`] for
/// a missing or malformed `__metadata__.config` or tensor (`input.idx` (B, T), `param.*`,
/// `output.*`, `grad.*`); model and kernel errors.
pub fn verify_reference_bytes(bytes: &[u8], name: &str, device: &Device) -> Result<VerifyReport> {
    device.exclusive(|| verify_inline(bytes, name, device))?
}

fn verify_inline(bytes: &[u8], name: &str, device: &Device) -> Result<VerifyReport> {
    let f: SafetensorsFile = parse_safetensors(bytes, name)?;
    let json = f
        .metadata
        .get("config")
        .ok_or_else(|| format_err(name, "__metadata__.config", "missing: not a model fixture"))?;
    let config = GPTConfig::from_json(json)
        .map_err(|e| format_err(name, "__metadata__.config", e.to_string()))?;
    let idx_t = f.get(name, "input.idx")?;
    let (batch, seq) = match idx_t.shape[..] {
        [b, t] => (b, t),
        _ => {
            return Err(format_err(
                name,
                "input.idx",
                format!("shape {:?}, expected (B, T)", idx_t.shape),
            ))
        }
    };
    let idx: Vec<u32> = idx_t
        .ints(name, "input.idx")?
        .iter()
        .map(|&i| {
            u32::try_from(i)
                .map_err(|_| format_err(name, "input.idx", format!("token id {i} is negative")))
        })
        .collect::<Result<_>>()?;
    let targets: Vec<i32> = f
        .get(name, "input.targets")?
        .ints(name, "input.targets")?
        .iter()
        .map(|&t| t as i32)
        .collect();

    let model = GPT::from_state_dict(
        config.clone(),
        &f.tensors,
        "param.",
        name,
        device,
        DType::F32,
    )?;
    let tape = Tape::new();
    let params = model.named_parameters();
    for (_, p) in &params {
        tape.watch(p);
    }
    let logits = model.forward(&idx, (batch, seq), ForwardOptions::new().tape(&tape))?;
    let loss_t = ops::cross_entropy(Some(&tape), &logits, &targets, Reduction::Mean)?;
    let loss = loss_t.to_scalar()? as f64;
    let got_logits = logits.to_vec_f32()?;
    let grads = tape.backward(&loss_t)?;

    let want_logits = f
        .get(name, "output.logits")?
        .floats(name, "output.logits")?;
    let reference_loss = f.get(name, "output.loss")?.floats(name, "output.loss")?[0];
    let logits_rel_err = rel(&got_logits, &want_logits);
    let loss_rel_err = (loss - reference_loss).abs() / reference_loss.abs();
    let mut grads_rel_err = BTreeMap::new();
    for (pname, p) in &params {
        let key = format!("grad.{pname}");
        let want = f.get(name, &key)?.floats(name, &key)?;
        let got = grads.require(p, pname)?.to_vec_f32()?;
        grads_rel_err.insert(pname.clone(), rel(&got, &want));
    }
    let max_rel_err = grads_rel_err
        .values()
        .copied()
        .chain([logits_rel_err, loss_rel_err])
        .fold(0.0, f64::max);

    let muon_rel_err = match (f.tensors.get("muon.input"), f.tensors.get("muon.ns5")) {
        (Some(input), Some(want)) => {
            let (rows, cols) = match input.shape[..] {
                [r, c] => (r, c),
                _ => return Err(format_err(name, "muon.input", "expected a matrix")),
            };
            let g = Tensor::from_f64(
                device,
                &input.floats(name, "muon.input")?,
                &input.shape,
                DType::F32,
            )?;
            let x = newton_schulz::<f32>(device.client(), g.handle(), rows, cols, 5)?;
            let got = Tensor::from_handle(device, x, &[rows, cols], DType::F32)?.to_vec_f32()?;
            Some(rel(&got, &want.floats(name, "muon.ns5")?))
        }
        _ => None,
    };
    Ok(VerifyReport {
        file: name.to_string(),
        device: device.to_string(),
        config,
        loss,
        reference_loss,
        logits_rel_err,
        loss_rel_err,
        grads_rel_err,
        max_rel_err,
        muon_rel_err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_matches_nanochat_on_the_cpu() {
        let dev = Device::cpu().unwrap();
        for name in ["gqa_tiny", "mha_small", "head/head_tiny", "head/head_small"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../tests/fixtures/reference/{name}.safetensors"));
            let r = verify_reference(&path, &dev).unwrap();
            assert!(
                r.passed(),
                "{name}: {}",
                serde_json::to_string_pretty(&r.to_json()).unwrap()
            );
            assert_eq!(
                r.grads_rel_err.len(),
                GPT::new(r.config.clone(), &dev, DType::F32, 0)
                    .unwrap()
                    .named_parameters()
                    .len()
            );
            // v1's fixtures carry a Newton-Schulz pair; HEAD's optimizer has its own fixtures.
            assert_eq!(
                r.muon_rel_err.is_some(),
                !name.starts_with("head/"),
                "{name}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_a_model_fixture_is_a_clear_error() {
        let dev = Device::cpu().unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/reference/gqa_tiny_optim.safetensors");
        let e = verify_reference(&path, &dev).unwrap_err().to_string();
        assert!(
            e.contains("gqa_tiny_optim") && (e.contains("config") || e.contains("missing")),
            "{e}"
        );
        assert!(verify_reference_bytes(b"junk", "junk.safetensors", &dev).is_err());
    }
}
