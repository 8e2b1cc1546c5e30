//! The float types kernels are instantiated for, chosen at run time and dispatched to the
//! compile-time generic kernels with [`with_float!`](crate::with_float).

use std::fmt;

pub use half::bf16;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE single precision (4 bytes).
    F32,
    /// bfloat16 (2 bytes): f32's exponent with 7 bits of mantissa.
    BF16,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::BF16 => 2,
        }
    }

    /// PyTorch's name of the type (`float32`, `bfloat16`), as in safetensors metadata and reports.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::BF16 => "bfloat16",
        }
    }

    /// Tolerance on the relative L2 error (|a - b| / |b|) of a kernel against its f64 reference,
    /// for ops whose every output sums few terms. Reductions over long rows scale this in their
    /// checks.
    pub const fn tolerance(self) -> f64 {
        match self {
            DType::F32 => 2e-6,
            DType::BF16 => 8e-3,
        }
    }

    /// Parses the names users type (`float32`, `f32`, `bfloat16`, `bf16`).
    pub fn parse(s: &str) -> Option<DType> {
        match s {
            "float32" | "f32" | "fp32" => Some(DType::F32),
            "bfloat16" | "bf16" => Some(DType::BF16),
            _ => None,
        }
    }

    /// Host values converted to this dtype's bytes (round to nearest even for bf16).
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            // One memcpy on little-endian hosts (every target this runs on); the byte-wise
            // form elsewhere. A host round trip of the training collectives goes through here.
            #[cfg(target_endian = "little")]
            DType::F32 => bytemuck::cast_slice::<f32, u8>(values).to_vec(),
            #[cfg(not(target_endian = "little"))]
            DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::BF16 => values
                .iter()
                .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
                .collect(),
        }
    }

    /// Bytes of this dtype decoded to f32.
    pub fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            // One copy on little-endian hosts, whatever the bytes' alignment.
            #[cfg(target_endian = "little")]
            DType::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(&bytes[..bytes.len() / 4 * 4]),
            #[cfg(not(target_endian = "little"))]
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs `$body` with the type alias `$F` bound to the Rust float type of `$dtype`.
///
/// ```
/// use nanochat_kernels::{elementwise, with_float, Backend, DType};
/// let client = Backend::Cpu.client().unwrap();
/// let dtype = DType::BF16; // chosen at run time
/// let ones = with_float!(dtype, F => elementwise::fill::<F>(&client, 4, 1.0)).unwrap();
/// let back = nanochat_kernels::check::download(&client, dtype, &ones).unwrap();
/// assert_eq!(back[..4], [1.0; 4]);
/// ```
#[macro_export]
macro_rules! with_float {
    ($dtype:expr, $F:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $F = f32;
                $body
            }
            $crate::DType::BF16 => {
                type $F = $crate::dtype::bf16;
                $body
            }
        }
    };
}

/// The float types kernels are instantiated for: cubecl's `Float` plus the runtime [`DType`].
pub trait KernelFloat: cubecl::prelude::Float + cubecl::prelude::CubeElement {
    /// The runtime tag of `Self`.
    const DTYPE: DType;

    /// cubecl's element type of `Self`.
    fn cube_elem_type() -> cubecl::ir::ElemType {
        use cubecl::ir::{ElemType, FloatKind};
        match Self::DTYPE {
            DType::F32 => ElemType::Float(FloatKind::F32),
            DType::BF16 => ElemType::Float(FloatKind::BF16),
        }
    }
}

impl KernelFloat for f32 {
    const DTYPE: DType = DType::F32;
}

impl KernelFloat for bf16 {
    const DTYPE: DType = DType::BF16;
}
