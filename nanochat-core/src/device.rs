//! A device: a runtime backend and its cubecl client.

use std::fmt;

use nanochat_kernels::{Backend, Client};

use crate::Result;

/// Where tensors live and kernels run. Cheap to clone.
#[derive(Clone)]
pub struct Device {
    backend: Backend,
    client: Client,
}

impl Device {
    /// The CPU runtime (always available).
    pub fn cpu() -> Result<Device> {
        Device::new(Backend::Cpu)
    }

    /// A device of the given backend, or an error naming why it is not available.
    pub fn new(backend: Backend) -> Result<Device> {
        Ok(Device {
            backend,
            client: backend.client()?,
        })
    }

    /// Parses `cpu`, `cuda` or `cuda:N` and opens that device.
    pub fn parse(s: &str) -> Result<Device> {
        let backend: Backend = s
            .parse()
            .map_err(|why: String| crate::CoreError::Mismatch { op: "device", why })?;
        Device::new(backend)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs `f` on the device's runner thread with the device to itself. Every launch `f` makes
    /// is then a direct call instead of a hand-off to that thread: on the CPU runtime this cuts
    /// the cost of a kernel launch from ~450 us to ~6 us on a 2-core machine (the hand-off
    /// spins, and spinning threads starve the workers; docs/benchmarks.md). Nested calls run
    /// inline.
    pub fn exclusive<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        self.client
            .exclusive(f)
            .map_err(|e| crate::CoreError::Mismatch {
                op: "device",
                why: format!("{self}: could not take the device: {e:?}"),
            })
    }

    /// Waits for all queued work on the device.
    pub fn sync(&self) -> Result<()> {
        Ok(nanochat_kernels::matmul::sync(&self.client)?)
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        self.backend == other.backend
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.backend)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.backend)
    }
}
