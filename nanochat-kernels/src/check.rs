//! Kernel-versus-reference checks: each kernel module registers checks that run the kernel and
//! its plain-Rust f64 reference on random inputs over odd shapes (not multiples of tile or
//! vector widths, size 1 included) and compare them. The unit tests and `nanochat selftest` run
//! the same checks, so a GPU is verified by copying one binary to it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::dtype::KernelFloat;
use crate::{Client, DType, Handle, Result};

/// The outcome of comparing one kernel output with its reference.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// Kernel and output, e.g. `rmsnorm.backward dx`.
    pub name: String,
    /// The element type the kernel ran in.
    pub dtype: DType,
    /// The problem size, e.g. `rows=7 cols=33`.
    pub case: String,
    /// |got - want| / |want| (L2); |got - want| when the reference is all zeros.
    pub rel_err: f64,
    /// Largest element-wise |got - want|.
    pub max_abs_err: f64,
    /// The bound on `rel_err`.
    pub tolerance: f64,
    /// Whether `rel_err <= tolerance` (false for a NaN or infinite output).
    pub passed: bool,
}

impl CheckReport {
    /// The report as a JSON object (`nanochat selftest --json`); the dtype by its name.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name, "dtype": self.dtype.name(), "case": self.case,
            "rel_err": self.rel_err, "max_abs_err": self.max_abs_err,
            "tolerance": self.tolerance, "passed": self.passed,
        })
    }
}

/// One registered check: a name and a function running it for one dtype.
pub struct Check {
    /// Dotted name, e.g. `layout.transpose` (what `selftest` filters and prints).
    pub name: &'static str,
    /// Runs the kernel and its reference on several shapes, pushing one report per output.
    pub run: fn(&mut Ctx) -> Result<()>,
}

/// What a check runs with: the client, the dtype, a seeded rng, and the reports so far.
pub struct Ctx<'a> {
    /// Where the kernels run.
    pub client: &'a Client,
    /// The element type of the kernels' inputs and outputs.
    pub dtype: DType,
    /// Source of the random inputs (seeded: a run is reproducible).
    pub rng: StdRng,
    /// One report per comparison so far.
    pub reports: Vec<CheckReport>,
}

impl<'a> Ctx<'a> {
    /// A context with no reports and its rng seeded by `seed`.
    pub fn new(client: &'a Client, dtype: DType, seed: u64) -> Self {
        Ctx {
            client,
            dtype,
            rng: StdRng::seed_from_u64(seed),
            reports: Vec::new(),
        }
    }

    /// Random values uniform in [lo, hi), rounded to the dtype (so the reference sees exactly
    /// what the kernel sees).
    pub fn rand(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        let v: Vec<f32> = (0..n).map(|_| self.rng.random_range(lo..hi)).collect();
        self.dtype.decode(&self.dtype.encode(&v))
    }

    /// Random f32 values not rounded to the dtype (statistics, optimizer state).
    pub fn rand_f32(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.rng.random_range(lo..hi)).collect()
    }

    /// Uploads values in the check's dtype.
    pub fn upload(&self, v: &[f32]) -> Handle {
        self.client.create_from_slice(&self.dtype.encode(v))
    }

    /// Reads a buffer of the check's dtype back as f32.
    pub fn download(&self, h: &Handle) -> Result<Vec<f32>> {
        download(self.client, self.dtype, h)
    }

    /// Compares `got` with the reference; records and returns whether it passed.
    pub fn compare(&mut self, name: &str, case: &str, got: &[f32], want: &[f64], tol: f64) -> bool {
        let report = compare(name, self.dtype, case, got, want, tol);
        let ok = report.passed;
        self.reports.push(report);
        ok
    }

    /// The dtype's base tolerance times `scale`.
    pub fn tol(&self, scale: f64) -> f64 {
        self.dtype.tolerance() * scale
    }
}

/// Reads `h` as `dtype` values, converted to f32.
pub fn download(client: &Client, dtype: DType, h: &Handle) -> Result<Vec<f32>> {
    let bytes = client
        .read_one(h.clone())
        .map_err(|e| crate::KernelError::runtime("read", format!("{e:?}")))?;
    Ok(dtype.decode(&bytes))
}

/// Uploads f32 values (statistics, optimizer state) whatever the tensor dtype.
pub fn upload_f32(client: &Client, v: &[f32]) -> Handle {
    client.create_from_slice(&DType::F32.encode(v))
}

/// Uploads values in the dtype of `F`.
pub fn upload_as<F: KernelFloat>(client: &Client, v: &[f32]) -> Handle {
    client.create_from_slice(&F::DTYPE.encode(v))
}

/// Relative L2 error and max absolute error of `got` against `want`.
pub fn errors(got: &[f32], want: &[f64]) -> (f64, f64) {
    assert_eq!(got.len(), want.len(), "compared buffers differ in length");
    let (mut num, mut den, mut max_abs) = (0.0f64, 0.0f64, 0.0f64);
    let mut nonfinite = false;
    for (&g, &w) in got.iter().zip(want) {
        let d = g as f64 - w;
        if !d.is_finite() && !(g as f64 == w) {
            nonfinite = true;
        }
        num += d * d;
        den += w * w;
        max_abs = max_abs.max(d.abs());
    }
    if nonfinite {
        return (f64::INFINITY, f64::INFINITY);
    }
    let rel = if den > 0.0 {
        (num / den).sqrt()
    } else {
        num.sqrt()
    };
    (rel, max_abs)
}

/// Compares a kernel output with its f64 reference: the relative L2 error (see [`CheckReport`])
/// against `tol`. Outputs of the wrong length, or with a NaN or infinity, fail.
pub fn compare(
    name: &str,
    dtype: DType,
    case: &str,
    got: &[f32],
    want: &[f64],
    tol: f64,
) -> CheckReport {
    let (rel_err, max_abs_err) = if got.len() == want.len() {
        errors(got, want)
    } else {
        (f64::INFINITY, f64::INFINITY)
    };
    CheckReport {
        name: name.to_string(),
        dtype,
        case: case.to_string(),
        rel_err,
        max_abs_err,
        tolerance: tol,
        passed: rel_err <= tol,
    }
}

/// Values as f64 (reference inputs).
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Every kernel check, in a stable order.
pub fn all_checks() -> Vec<Check> {
    let mut out = Vec::new();
    out.extend(crate::elementwise::checks());
    out.extend(crate::broadcast::checks());
    out.extend(crate::reduce::checks());
    out.extend(crate::softmax::checks());
    out.extend(crate::cross_entropy::checks());
    out.extend(crate::embedding::checks());
    out.extend(crate::rmsnorm::checks());
    out.extend(crate::rotary::checks());
    out.extend(crate::matmul::checks());
    out.extend(crate::attention::checks());
    out.extend(crate::dropout::checks());
    out.extend(crate::optim::checks());
    out.extend(crate::muon_head::checks());
    out.extend(crate::layout::checks());
    #[cfg(feature = "cuda")]
    out.extend(crate::nccl::checks());
    out
}

/// The dtypes checked on a client: f32 always, bf16 where the runtime supports it.
pub fn dtypes_for(client: &Client) -> Vec<DType> {
    use cubecl::ir::{ElemType, FloatKind};
    let mut out = vec![DType::F32];
    if client
        .properties()
        .supports_type(ElemType::Float(FloatKind::BF16))
    {
        out.push(DType::BF16);
    }
    out
}

/// Runs one check for each dtype of the client; errors become failed reports. Runs on the
/// device's thread, where kernel launches are direct calls (see `Client::exclusive`).
pub fn run_check(client: &Client, check: &Check) -> Vec<CheckReport> {
    let run = check.run;
    let name = check.name;
    let c = client.clone();
    match client.exclusive(move || run_check_inline(&c, name, run)) {
        Ok(reports) => reports,
        Err(e) => vec![CheckReport {
            name: format!("{name} (device error: {e:?})"),
            dtype: DType::F32,
            case: String::new(),
            rel_err: f64::INFINITY,
            max_abs_err: f64::INFINITY,
            tolerance: 0.0,
            passed: false,
        }],
    }
}

fn run_check_inline(
    client: &Client,
    name: &'static str,
    run: fn(&mut Ctx) -> Result<()>,
) -> Vec<CheckReport> {
    let check = Check { name, run };
    let mut reports = Vec::new();
    for dtype in dtypes_for(client) {
        let mut ctx = Ctx::new(client, dtype, 0x5eed ^ check.name.len() as u64);
        let result = (check.run)(&mut ctx);
        reports.append(&mut ctx.reports);
        if let Err(e) = result {
            reports.push(CheckReport {
                name: format!("{} (error: {e})", check.name),
                dtype,
                case: String::new(),
                rel_err: f64::INFINITY,
                max_abs_err: f64::INFINITY,
                tolerance: 0.0,
                passed: false,
            });
        }
    }
    reports
}

/// A module's checks, in order: `check_list!["module.op" => check_fn, ..]` is the
/// `Vec<Check>` of those names and functions.
macro_rules! check_list {
    ($($name:literal => $run:expr),+ $(,)?) => {
        vec![$($crate::check::Check { name: $name, run: $run }),+]
    };
}
pub(crate) use check_list;

/// One `#[test]` per named check, each running [`assert_check`]:
/// `check_tests!(test_name => "check.name", ..)`.
#[cfg(test)]
macro_rules! check_tests {
    ($($test:ident => $check:literal),+ $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::check::assert_check($check);
            }
        )+
    };
}
#[cfg(test)]
pub(crate) use check_tests;

/// Test helper: runs the named check on every available backend and panics with every failing
/// comparison.
pub fn assert_check(name: &str) {
    let check = all_checks()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check named {name}"));
    let mut failures = Vec::new();
    let mut count = 0;
    for backend in crate::device::available_backends() {
        let client = backend.client().expect("backend listed as available");
        for r in run_check(&client, &check) {
            count += 1;
            if !r.passed {
                failures.push(format!(
                    "{backend} {} {} [{}]: rel_err {:.3e} (max abs {:.3e}) > tol {:.1e}",
                    r.name, r.dtype, r.case, r.rel_err, r.max_abs_err, r.tolerance
                ));
            }
        }
    }
    assert!(count > 0, "check {name} compared nothing");
    assert!(
        failures.is_empty(),
        "{} of {count} comparisons failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The float64 tensors of the fixture `tests/fixtures/<rel>` (a safetensors file), by name: data
/// and shape. Tensors of other dtypes are left out. Panics on a missing or unreadable file (a
/// test helper).
#[cfg(test)]
pub(crate) fn f64_fixture(rel: &str) -> std::collections::HashMap<String, (Vec<f64>, Vec<usize>)> {
    let path = format!("{}/../tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .filter(|(_, t)| t.dtype() == safetensors::Dtype::F64)
        .map(|(name, t)| {
            let data = t
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name, (data, t.shape().to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_catches_a_wrong_value() {
        let want = [1.0, 2.0, 3.0];
        assert!(compare("t", DType::F32, "", &[1.0, 2.0, 3.0], &want, 1e-6).passed);
        assert!(!compare("t", DType::F32, "", &[1.0, 2.001, 3.0], &want, 1e-6).passed);
        assert!(!compare("t", DType::F32, "", &[1.0, f32::NAN, 3.0], &want, 1e-6).passed);
        assert!(!compare("t", DType::F32, "", &[1.0, 2.0], &want, 1e-6).passed);
    }

    /// The checks measure real, non-zero rounding error in f32 (so they compare real outputs)
    /// and stay well inside their tolerances.
    #[test]
    fn checks_report_plausible_errors() {
        let client = crate::Backend::Cpu.client().unwrap();
        let check = all_checks()
            .into_iter()
            .find(|c| c.name == "rmsnorm")
            .unwrap();
        let reports = run_check(&client, &check);
        let f32_fwd: Vec<_> = reports
            .iter()
            .filter(|r| r.dtype == DType::F32 && r.name == "rmsnorm.forward y")
            .collect();
        assert!(!f32_fwd.is_empty());
        assert!(
            f32_fwd.iter().any(|r| r.rel_err > 0.0),
            "suspiciously exact: {f32_fwd:?}"
        );
        assert!(f32_fwd.iter().all(|r| r.rel_err < 1e-6), "{f32_fwd:?}");
    }
}
