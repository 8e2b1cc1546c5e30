//! Compiler-runtime functions the JIT'd CPU kernels may call, defined here so they exist on
//! every host.
//!
//! On a CPU without a native f32 -> bf16 conversion (no AVX-512 BF16, e.g. most AMD EPYC and
//! older Intel parts), LLVM lowers `fptrunc float to bfloat` to a call of `__truncsfbf2`. That
//! function is in libgcc from GCC 13 on and in compiler-rt, but not in Debian 12's libgcc
//! (GCC 12), so every bf16 kernel failed to link in cubecl's JIT there ("Symbols not found:
//! [ __truncsfbf2 ]"). The JIT resolves such names in the running process's dynamic symbol
//! table: the linker exports this one (`--export-dynamic-symbol`, from the `build.rs` of every package with binaries or tests), and
//! [`crate::device::Backend::client`] references it so the linker keeps it.

/// f32 -> bf16, rounding to nearest even (NaN stays NaN), as compiler-rt's `__truncsfbf2`.
///
/// ABI: the x86-64 System V convention returns a `__bf16` in the low 16 bits of `xmm0`, which
/// is where an `f32` whose bits are the bf16's (upper half zero) lands.
#[no_mangle]
pub extern "C" fn __truncsfbf2(x: f32) -> f32 {
    f32::from_bits(half::bf16::from_f32(x).to_bits() as u32)
}

/// Keeps [`__truncsfbf2`] in every binary that opens a device.
pub(crate) fn keep() {
    std::hint::black_box(__truncsfbf2 as extern "C" fn(f32) -> f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2^-8: 1 + HALFWAY lies halfway between two bf16 values.
    const HALFWAY: f32 = 1.0 / 256.0;

    #[test]
    fn rounds_to_nearest_even_like_half() {
        for x in [
            0.0f32,
            -0.0,
            1.0,
            1.0 + HALFWAY,
            1.0117188,
            2.75,
            -2.5e-30,
            65504.0,
            f32::MAX,
        ] {
            let bits = __truncsfbf2(x).to_bits();
            assert_eq!(bits >> 16, 0);
            assert_eq!(bits as u16, half::bf16::from_f32(x).to_bits(), "{x}");
        }
        assert!(half::bf16::from_bits(__truncsfbf2(f32::NAN).to_bits() as u16).is_nan());
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(__truncsfbf2(1.0 + HALFWAY).to_bits() as u16, 0x3f80);
    }
}
