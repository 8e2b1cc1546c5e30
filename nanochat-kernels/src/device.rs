//! Choosing a runtime at run time: the CPU runtime (always linked) or CUDA (with the `cuda`
//! feature). A CUDA device that is not there is an error, never a panic, so GPU tests and
//! `--device cuda` skip or fail cleanly on machines without one.

use std::fmt;
use std::str::FromStr;

use cubecl::client::Client;

use crate::KernelError;

/// Which runtime and device to launch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// cubecl's CPU runtime (always available).
    #[default]
    Cpu,
    /// CUDA device by index.
    Cuda(usize),
}

impl Backend {
    /// The compute client of this backend, or an error naming why there is none.
    pub fn client(self) -> Result<Client, KernelError> {
        crate::libcalls::keep();
        let device = match self {
            Backend::Cpu => cubecl::Device::cpu(),
            Backend::Cuda(i) => cubecl::Device::cuda(i),
        }
        .map_err(|e| KernelError::runtime("device", format!("{self}: {e}")))?;
        Ok(device.client())
    }

    /// Whether this is the CPU runtime.
    pub fn is_cpu(self) -> bool {
        matches!(self, Backend::Cpu)
    }

    /// The devices of `n` workers starting at this one, as nanochat's `chat_web.py
    /// --num-gpus` places them: one GPU each (`cuda:2` and n = 2 give `cuda:2`, `cuda:3`), or
    /// `n` CPU workers sharing the CPU.
    pub fn workers(self, n: usize) -> Vec<Backend> {
        match self {
            Backend::Cpu => vec![Backend::Cpu; n],
            Backend::Cuda(first) => (first..first + n).map(Backend::Cuda).collect(),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Cpu => f.write_str("cpu"),
            Backend::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Backend::Cpu),
            "cuda" | "gpu" => Ok(Backend::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(i)) => Ok(Backend::Cuda(i)),
                _ => Err(format!(
                    "unknown device `{s}`: expected cpu, cuda or cuda:N"
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_take_one_gpu_each_from_the_one_named() {
        let cuda = |i| Backend::Cuda(i);
        assert_eq!(
            "cuda".parse::<Backend>().unwrap().workers(4),
            [cuda(0), cuda(1), cuda(2), cuda(3)]
        );
        assert_eq!(
            "cuda:2".parse::<Backend>().unwrap().workers(2),
            [cuda(2), cuda(3)]
        );
        assert_eq!(Backend::Cpu.workers(3), [Backend::Cpu; 3]);
        assert_eq!(cuda(1).to_string(), "cuda:1");
    }
}

/// What launch geometry needs to know of a client's hardware.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Runtime name as cubecl reports it (`cpu`, `cuda`).
    pub runtime: &'static str,
    /// Units per plane (warp); 1 on the CPU runtime, where plane operations do not exist.
    pub plane_dim: u32,
    /// Most units one cube may have. On the CPU runtime every unit of a cube is a worker thread
    /// that loops over all cubes, so this is the number of cores.
    pub max_units_per_cube: u32,
    /// Whether units of one launch should take contiguous blocks of work (CPU caches) rather
    /// than neighbouring elements (GPU coalescing).
    pub blocked: bool,
}

impl DeviceInfo {
    /// What `client`'s device reports (its properties, read once per call).
    pub fn of(client: &Client) -> DeviceInfo {
        let props = client.properties();
        let hw = &props.hardware;
        let is_cpu = hw.num_cpu_cores.is_some();
        DeviceInfo {
            runtime: client.name(),
            plane_dim: if is_cpu { 1 } else { hw.plane_size_max.max(1) },
            max_units_per_cube: hw.max_units_per_cube.max(1),
            blocked: is_cpu,
        }
    }

    /// Whether plane (warp) reductions can be used.
    pub fn has_planes(&self) -> bool {
        self.plane_dim > 1
    }
}

/// (free, total) memory of CUDA device `index` in bytes (None without the `cuda` feature or a
/// GPU).
pub fn cuda_memory(index: usize) -> Option<(u64, u64)> {
    #[cfg(feature = "cuda")]
    {
        let ctx = cudarc::driver::CudaContext::new(index).ok()?;
        ctx.bind_to_thread().ok()?;
        cudarc::driver::result::mem_get_info()
            .ok()
            .map(|(free, total)| (free as u64, total as u64))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = index;
        None
    }
}

/// Free memory of CUDA device `index` in bytes.
pub fn cuda_free_memory(index: usize) -> Option<u64> {
    cuda_memory(index).map(|(free, _)| free)
}

/// Every backend this build and machine can run: the CPU always, CUDA device 0 when the build
/// has the `cuda` feature and a GPU answers. Tests iterate over these; a missing GPU is reported
/// once on stderr and skipped.
pub fn available_backends() -> Vec<Backend> {
    let mut out = vec![Backend::Cpu];
    if cfg!(feature = "cuda") {
        match Backend::Cuda(0).client() {
            Ok(_) => out.push(Backend::Cuda(0)),
            Err(e) => {
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| eprintln!("skipping CUDA: {e}"));
            }
        }
    }
    out
}
