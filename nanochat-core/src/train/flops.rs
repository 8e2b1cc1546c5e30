//! The peak FLOP/s that MFU divides by.

use crate::{DType, Device};

/// The peak FLOP/s MFU is measured against: `$NANOCHAT_PEAK_FLOPS`, else H100 figures on CUDA
/// (989 TFLOP/s bf16 as nanochat uses, 494 tf32/f32), else the CPU's f32 FMA peak
/// ([`cpu_peak_flops`]).
pub fn peak_flops(device: &Device, dtype: DType) -> f64 {
    if let Some(v) = crate::paths::env_string("NANOCHAT_PEAK_FLOPS").and_then(|v| v.parse().ok()) {
        return v;
    }
    match (device.backend().is_cpu(), dtype) {
        (true, _) => cpu_peak_flops(),
        (false, DType::BF16) => 989e12,
        (false, DType::F32) => 494e12,
    }
}

/// f32 FMA peak of this host: cores x clock (`cpu MHz` of /proc/cpuinfo, else 2.5 GHz) x FLOPs
/// per cycle (two FMA units of the widest vector: 64 with AVX-512, 32 with AVX2, else 16).
/// The reference 2-core AVX-512 machine at 2.6 GHz: 333 GFLOP/s.
pub fn cpu_peak_flops() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mhz = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .filter(|m| *m > 100.0)
        .unwrap_or(2500.0);
    #[cfg(target_arch = "x86_64")]
    let per_cycle = if std::is_x86_feature_detected!("avx512f") {
        64.0
    } else if std::is_x86_feature_detected!("avx2") {
        32.0
    } else {
        16.0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let per_cycle = 16.0;
    cores * mhz * 1e6 * per_cycle
}
