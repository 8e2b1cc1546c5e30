//! A device: a runtime backend and its cubecl client.

use std::fmt;

use nanochat_kernels::cubecl::server::ServerError;
use nanochat_kernels::{Backend, Client};

use crate::{CoreError, Result};

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

    /// A device of the given backend. Errors: [`CoreError::Kernel`] naming why it is not
    /// available (no CUDA in this build, no such GPU).
    pub fn new(backend: Backend) -> Result<Device> {
        Ok(Device {
            backend,
            client: backend.client()?,
        })
    }

    /// Parses `cpu`, `cuda` or `cuda:N` and opens that device; another name is
    /// [`CoreError::Unknown`] of kind `device`.
    pub fn parse(s: &str) -> Result<Device> {
        let backend: Backend = s.parse().map_err(|_: String| CoreError::Unknown {
            kind: "device",
            name: s.to_string(),
            expected: "cpu, cuda or cuda:N".into(),
        })?;
        Device::new(backend)
    }

    /// Its backend (`Cpu` or `Cuda(N)`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The cubecl client that allocates its buffers and launches its kernels.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs `f` on the device's runner thread with the device to itself. Every launch `f` makes
    /// is then a direct call instead of a hand-off to that thread: on the CPU runtime this cuts
    /// the cost of a kernel launch from ~450 us to ~6 us on a 2-core machine (the hand-off
    /// spins, and spinning threads starve the workers; docs/benchmarks.md). Nested calls run
    /// inline. A panic in `f` (or a runner thread that is gone) is
    /// [`CoreError::WorkerPanicked`] with the panic's message.
    pub fn exclusive<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        self.client.exclusive(f).map_err(|e| {
            let message = match e {
                ServerError::Generic { reason, .. } => reason
                    .strip_prefix("CallError(")
                    .and_then(|r| r.strip_suffix(')'))
                    .unwrap_or(&reason)
                    .to_string(),
                other => format!("{other:?}"),
            };
            CoreError::WorkerPanicked {
                device: self.to_string(),
                message,
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic on the device's runner thread is reported as such, with its message, and the
    /// device keeps working; an unknown device name is refused by name.
    #[test]
    fn a_panic_on_the_device_thread_is_a_worker_panic() {
        let dev = Device::cpu().unwrap();
        let e = dev
            .exclusive(|| -> usize { panic!("boom in a device task") })
            .unwrap_err();
        match &e {
            CoreError::WorkerPanicked { device, message } => {
                assert_eq!(device, "cpu");
                assert!(message.contains("boom in a device task"), "{message}");
            }
            other => panic!("expected a worker panic, got {other:?}"),
        }
        assert_eq!(dev.exclusive(|| 2 + 2).unwrap(), 4);
        let e = Device::parse("quantum").unwrap_err();
        assert!(
            matches!(&e, CoreError::Unknown { kind: "device", name, .. } if name == "quantum"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "unknown device `quantum`: expected cpu, cuda or cuda:N"
        );
    }
}
