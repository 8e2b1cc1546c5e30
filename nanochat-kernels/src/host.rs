//! Direct access to the host memory of cubecl's CPU runtime: a tensor's buffer pinned and seen
//! as a slice, with no download or upload. The collectives of several ranks on the CPU hand
//! these slices to MPI (the CUDA path does the same with device pointers and NCCL).

use cubecl::cpu::compute::server::CpuServer;
use cubecl::server::Handle;

use crate::{Client, KernelError, Result};

/// A CPU-runtime buffer pinned in place ([`host_view`]): its bytes stay where they are, and no
/// kernel runs on them, while the view lives (the caller holds the device: `Client::exclusive`).
pub struct HostView {
    _pinned: Box<dyn std::any::Any>,
    ptr: *mut u8,
    len: usize,
}

/// Pins `handle`'s buffer (after the work queued on it) and returns a view of its first
/// `bytes` bytes, or `None` when `client` is not the CPU runtime (a GPU's memory is not the
/// host's). Errors: a buffer shorter than `bytes`; the runtime's.
pub fn host_view(client: &Client, handle: &Handle, bytes: usize) -> Result<Option<HostView>> {
    let Ok(res) = client.get_resource::<CpuServer>(handle.clone()) else {
        return Ok(None);
    };
    let (ptr, len) = res.resource().get_write_ptr_and_length();
    if len < bytes {
        return Err(KernelError::runtime(
            "host view",
            format!("a buffer of {len} bytes for {bytes}"),
        ));
    }
    Ok(Some(HostView {
        _pinned: Box::new(res),
        ptr,
        len: bytes,
    }))
}

impl HostView {
    /// The buffer as f32 values, or `None` when its address is not 4-byte aligned.
    ///
    /// # Safety
    /// The caller holds the device (no kernel may touch the buffer meanwhile), and no other
    /// view of the same buffer is used while this slice lives.
    pub unsafe fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        if !(self.ptr as usize).is_multiple_of(std::mem::align_of::<f32>()) {
            return None;
        }
        // SAFETY: the pointer and length come from the pinned resource (at least `len` bytes,
        // checked in `host_view`), aligned for f32 (checked above); exclusivity is the
        // caller's contract.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut f32, self.len / 4) })
    }
}
