//! [`Tensor`]: a contiguous, row-major n-d array in a cubecl buffer.
//!
//! Tensors are immutable values: ops return new tensors; clones share the buffer and the
//! identity the tape knows them by ([`Tensor::id`]). Every tensor is contiguous, so its strides
//! are always the row-major strides of its shape; views that would need other strides
//! (transposes) are materialised by a kernel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nanochat_kernels::{elementwise, with_float, DType, Handle};

use crate::{CoreError, Device, Result};

/// Identity of a tensor on the tape.
pub type TensorId = u64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Inner {
    handle: Handle,
    shape: Vec<usize>,
    dtype: DType,
    device: Device,
    id: TensorId,
}

/// A contiguous, row-major n-d array in a cubecl buffer on a [`Device`], with its shape and
/// [`DType`] (f32 or bf16). Cloning is cheap and shares the buffer; every tensor has a unique
/// [`TensorId`] that the [`Tape`](crate::Tape) keys gradients by.
#[derive(Clone)]
pub struct Tensor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor(#{} {:?} {} on {})",
            self.id(),
            self.shape(),
            self.dtype(),
            self.device()
        )
    }
}

impl Tensor {
    /// Wraps a buffer holding `shape` elements of `dtype` (checked) as a new tensor.
    pub fn from_handle(
        device: &Device,
        handle: Handle,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let need = shape.iter().product::<usize>() as u64 * dtype.size() as u64;
        if handle.size_in_used() < need {
            return Err(CoreError::shape(
                "Tensor::from_handle",
                &[shape],
                format!(
                    "buffer of {} bytes is smaller than the {need} bytes of the shape",
                    handle.size_in_used()
                ),
            ));
        }
        Ok(Tensor {
            inner: Arc::new(Inner {
                handle,
                shape: shape.to_vec(),
                dtype,
                device: device.clone(),
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            }),
        })
    }

    /// Uploads f32 values, converted to `dtype`.
    pub fn from_f32(
        device: &Device,
        data: &[f32],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(CoreError::shape(
                "Tensor::from_f32",
                &[shape],
                format!("{} values for {n} elements", data.len()),
            ));
        }
        let handle = device.client().create_from_slice(&dtype.encode(data));
        Tensor::from_handle(device, handle, shape, dtype)
    }

    /// Uploads f64 values, rounded to `dtype`.
    pub fn from_f64(
        device: &Device,
        data: &[f64],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
        Tensor::from_f32(device, &v, shape, dtype)
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(device: &Device, shape: &[usize], value: f32, dtype: DType) -> Result<Tensor> {
        let n = shape.iter().product();
        let handle = with_float!(dtype, F => elementwise::fill::<F>(device.client(), n, value))?;
        Tensor::from_handle(device, handle, shape, dtype)
    }

    /// A tensor of `shape` filled with zeros (`torch.zeros`).
    pub fn zeros(device: &Device, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::full(device, shape, 0.0, dtype)
    }

    /// A tensor of the same shape, dtype and device, filled with `value`.
    pub fn full_like(&self, value: f32) -> Result<Tensor> {
        Tensor::full(self.device(), self.shape(), value, self.dtype())
    }

    /// The same buffer under a new identity (used by ops whose output aliases their input).
    pub(crate) fn alias(&self, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_handle(self.device(), self.handle().clone(), shape, self.dtype())
    }

    /// Overwrites the values in place (same buffer, so every holder of this tensor sees them),
    /// converted to the tensor's dtype: how ranks receive the parameters their peers updated.
    ///
    /// Errors: [`CoreError::Shape`] when `data` does not hold [`Tensor::len`] values.
    pub fn write_f32(&self, data: &[f32]) -> Result<()> {
        if data.len() != self.len() {
            return Err(CoreError::shape(
                "Tensor::write_f32",
                &[self.shape()],
                format!("{} values for {} elements", data.len(), self.len()),
            ));
        }
        let bytes =
            nanochat_kernels::cubecl::bytes::Bytes::from_bytes_vec(self.dtype().encode(data));
        self.device().client().write(self.handle(), bytes);
        Ok(())
    }

    /// Downloads the values as f32.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        let mut v =
            nanochat_kernels::check::download(self.device().client(), self.dtype(), self.handle())?;
        v.truncate(self.len());
        Ok(v)
    }

    /// Downloads the values as f64 (widened from the stored dtype).
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        Ok(self.to_vec_f32()?.into_iter().map(f64::from).collect())
    }

    /// The value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f32> {
        if self.len() != 1 {
            return Err(CoreError::shape(
                "Tensor::to_scalar",
                &[self.shape()],
                "not a single value",
            ));
        }
        Ok(self.to_vec_f32()?[0])
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }

    /// Row-major strides of the shape (tensors are always contiguous).
    pub fn strides(&self) -> Vec<usize> {
        nanochat_kernels::broadcast::contiguous_strides(self.shape())
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.inner.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.inner.shape.iter().product()
    }

    /// Whether the tensor has no elements (a zero dimension).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type of the buffer.
    pub fn dtype(&self) -> DType {
        self.inner.dtype
    }

    /// The device the buffer lives on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The cubecl buffer handle, for launching kernels on it.
    pub fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    /// The tensor's unique id (kept by clones; a new op output gets a new one).
    pub fn id(&self) -> TensorId {
        self.inner.id
    }

    /// The two dimensions of a rank-2 tensor.
    pub fn dims2(&self) -> Result<(usize, usize)> {
        match *self.shape() {
            [a, b] => Ok((a, b)),
            _ => Err(CoreError::shape(
                "dims2",
                &[self.shape()],
                "expected rank 2",
            )),
        }
    }

    /// The three dimensions of a rank-3 tensor; [`CoreError::Shape`] otherwise.
    pub fn dims3(&self) -> Result<(usize, usize, usize)> {
        match *self.shape() {
            [a, b, c] => Ok((a, b, c)),
            _ => Err(CoreError::shape(
                "dims3",
                &[self.shape()],
                "expected rank 3",
            )),
        }
    }

    /// The four dimensions of a rank-4 tensor, e.g. (B, T, H, D); [`CoreError::Shape`]
    /// otherwise.
    pub fn dims4(&self) -> Result<(usize, usize, usize, usize)> {
        match *self.shape() {
            [a, b, c, d] => Ok((a, b, c, d)),
            _ => Err(CoreError::shape(
                "dims4",
                &[self.shape()],
                "expected rank 4",
            )),
        }
    }

    /// (rows, cols) of the tensor seen as rows of its last dimension.
    pub fn rows_cols(&self) -> (usize, usize) {
        let cols = self.shape().last().copied().unwrap_or(1);
        (self.len().checked_div(cols).unwrap_or(0), cols)
    }
}

/// Checks that tensors share one device and dtype.
pub(crate) fn same_kind(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    let first = ts[0];
    for t in &ts[1..] {
        if t.dtype() != first.dtype() {
            return Err(CoreError::Mismatch {
                op,
                why: format!("dtypes {} and {} differ", first.dtype(), t.dtype()),
            });
        }
        if t.device() != first.device() {
            return Err(CoreError::Mismatch {
                op,
                why: format!("devices {} and {} differ", first.device(), t.device()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shape_checks() {
        let dev = Device::cpu().unwrap();
        let t =
            Tensor::from_f32(&dev, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], DType::F32).unwrap();
        assert_eq!(t.to_vec_f32().unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(t.dims2().unwrap(), (2, 3));
        assert_eq!(t.strides(), vec![3, 1]);
        assert!(t.dims3().is_err());
        assert!(Tensor::from_f32(&dev, &[1.0], &[2], DType::F32).is_err());
        let b = Tensor::from_f32(&dev, &[1.5, -2.25], &[2], DType::BF16).unwrap();
        assert_eq!(b.to_vec_f32().unwrap(), vec![1.5, -2.25]);
        assert_ne!(t.id(), t.alias(&[6]).unwrap().id());
        assert_eq!(
            Tensor::full(&dev, &[2, 2], 3.0, DType::F32)
                .unwrap()
                .to_vec_f32()
                .unwrap(),
            vec![3.0; 4]
        );
    }
}
