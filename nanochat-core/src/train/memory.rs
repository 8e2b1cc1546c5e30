//! Memory a training run needs, estimated from its configuration before it starts, and what the
//! device has free: a run that cannot fit is refused with a clear error instead of failing (or
//! swapping) mid-way.

use crate::model::{GPTConfig, GPT};
use crate::{CoreError, Device, Result};

/// Bytes a training step needs: weights, gradients, optimizer state (AdamW: two f32 moments,
/// Muon: one buffer), and activations saved for the backward of one micro-batch (per layer and
/// token about 24 floats of width n_embd, plus three copies of the (B, T, vocab) logits).
pub fn estimate_training_bytes(
    config: &GPTConfig,
    num_params: usize,
    embedding_params: usize,
    batch: usize,
    seq: usize,
) -> u64 {
    let p = num_params as u64;
    let adam = embedding_params as u64 * 2 + (config.vocab_size * config.n_embd) as u64;
    let weights_grads_state = 4 * (2 * p + (p - adam / 2) + adam);
    let tokens = (batch * seq) as u64;
    let per_layer = 24 * config.n_embd as u64 * tokens * 4;
    let logits = 3 * tokens * config.vocab_size as u64 * 4;
    weights_grads_state + config.n_layer as u64 * per_layer + logits
}

/// Bytes free where the device keeps its tensors: for the CPU runtime the least of the host's
/// available memory, what the process's cgroup (a container's memory limit) leaves, and what
/// its address-space limit (`ulimit -v`) leaves; for CUDA, the device memory cubecl reports.
pub fn free_bytes(device: &Device) -> Option<u64> {
    if device.backend().is_cpu() {
        return host_free_bytes();
    }
    match device.backend() {
        nanochat_kernels::Backend::Cuda(index) => nanochat_kernels::device::cuda_free_memory(index),
        nanochat_kernels::Backend::Cpu => None,
    }
}

/// Host memory free to this process: the least of the host's available memory, what its
/// cgroup (a container's limit) leaves and what `ulimit -v` leaves; `None` when unknown.
pub fn host_free_bytes() -> Option<u64> {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let limits = [
        Some(sys.available_memory()).filter(|&a| a > 0),
        sys.cgroup_limits().map(|c| c.free_memory),
        address_space_left(),
    ];
    limits.into_iter().flatten().min()
}

/// What `RLIMIT_AS` (`ulimit -v`) leaves this process: the limit less its current virtual
/// size (`VmSize` in `/proc/self/status`); `None` when unlimited or unknown.
fn address_space_left() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } != 0
            || lim.rlim_cur == libc::RLIM_INFINITY
        {
            return None;
        }
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmSize:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(lim.rlim_cur.saturating_sub(kib * 1024))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The bytes `device` has free ([`free_bytes`]) when `need` bytes would take more than 90% of
/// them (10% to spare); `None` when they fit or the free memory is unknown. The one rule of
/// [`check_fits`] and [`check_weights_fit`](crate::model::check_weights_fit).
pub fn exceeds_free(need: u64, device: &Device) -> Option<u64> {
    over_90_percent(need, free_bytes(device))
}

/// [`exceeds_free`] for host memory ([`host_free_bytes`]), whatever the device.
pub fn exceeds_host_free(need: u64) -> Option<u64> {
    over_90_percent(need, host_free_bytes())
}

/// `free` when `need` would take more than 90% of it.
fn over_90_percent(need: u64, free: Option<u64>) -> Option<u64> {
    free.filter(|&free| need as f64 > free as f64 * 0.9)
}

/// Refuses a run whose estimate exceeds the free memory (with 10% to spare).
pub fn check_fits(model: &GPT, batch: usize, seq: usize) -> Result<u64> {
    let c = model.config();
    let need = estimate_training_bytes(c, model.num_params(), c.vocab_size * c.n_embd, batch, seq);
    if let Some(free) = exceeds_free(need, model.get_device()) {
        return Err(CoreError::OutOfMemory {
            device: model.get_device().to_string(),
            need,
            free,
            batch,
            seq,
        });
    }
    Ok(need)
}
