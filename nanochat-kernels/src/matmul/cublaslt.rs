//! cuBLASLt on buffers owned by cubecl's CUDA runtime (CUDA builds only).
//!
//! cubecl does not expose its CUDA stream, so ordering is kept with host waits: pin the three
//! buffers (`get_resource`, which also yields their device pointers), drain cubecl's stream,
//! run the GEMM on our own stream in cubecl's (primary) context, wait for it, unpin. The cost
//! is a GPU bubble per call; the dispatch times this path against cubek's routines per shape
//! and takes the faster.
//!
//! Row-major `C = op(A) op(B)` is column-major `C^T = op(B)^T op(A)^T`: our B is handed to
//! cuBLASLt as its A and our A as its B, with no data movement. f32 uses
//! `CUBLAS_COMPUTE_32F` (true f32) unless tf32 is allowed; bf16 accumulates in f32.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use cubecl::cuda::CudaRuntime;
use cubecl_runtime::runtime::Runtime;
use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys as lts;
use cudarc::driver::result as drv;
use cudarc::driver::sys as drvs;

use super::MatmulShape;
use crate::dtype::KernelFloat;
use crate::{Client, DType, Handle, KernelError, Result};

type CudaServer = <CudaRuntime as Runtime>::Server;

fn err(e: impl std::fmt::Debug) -> KernelError {
    KernelError::runtime("matmul (cuBLASLt)", format!("{e:?}"))
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    shape: MatmulShape,
    dtype: DType,
    tf32: bool,
    align: [u32; 3],
}

struct Plan {
    desc: lts::cublasLtMatmulDesc_t,
    la: lts::cublasLtMatrixLayout_t,
    lb: lts::cublasLtMatrixLayout_t,
    lc: lts::cublasLtMatrixLayout_t,
    algo: lts::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        unsafe {
            for l in [self.la, self.lb, self.lc] {
                if !l.is_null() {
                    let _ = lt::destroy_matrix_layout(l);
                }
            }
            if !self.desc.is_null() {
                let _ = lt::destroy_matmul_desc(self.desc);
            }
        }
    }
}

/// One device's cuBLASLt state: its own handle, stream, workspace and plans.
struct LtState {
    ctx: Arc<cudarc::driver::CudaContext>,
    stream: drvs::CUstream,
    handle: lts::cublasLtHandle_t,
    workspace: drvs::CUdeviceptr,
    workspace_size: usize,
    plans: HashMap<PlanKey, Plan>,
}

// Raw CUDA handles, only used under their device's lock.
unsafe impl Send for LtState {}

/// Per device (`cuda:0`, `cuda:1`, ...): workers on two GPUs never share a handle or a stream,
/// nor wait for each other's lock.
static LT: super::state::PerDevice<LtState> = super::state::PerDevice::new();

fn init(ordinal: usize) -> Result<LtState> {
    // cudarc panics on first use when the library is missing: ask first.
    if !unsafe { lts::is_culib_present() } {
        return Err(KernelError::unsupported(
            "matmul (cuBLASLt)",
            "libcublasLt was not found on the loader path",
        ));
    }
    let ctx = cudarc::driver::CudaContext::new(ordinal).map_err(err)?;
    let stream = drv::stream::create(drv::stream::StreamKind::NonBlocking).map_err(err)?;
    let handle = lt::create_handle().map_err(err)?;
    let major = ctx
        .attribute(drvs::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        .map_err(err)?;
    let workspace_size: usize = if major >= 9 { 32 << 20 } else { 4 << 20 };
    let workspace = unsafe { drv::malloc_sync(workspace_size) }.map_err(err)?;
    Ok(LtState {
        ctx,
        stream,
        handle,
        workspace,
        workspace_size,
        plans: HashMap::new(),
    })
}

/// Largest power of two (up to 256) dividing the pointer and the batch stride.
fn alignment(ptr: u64, batch: usize, stride_bytes: u64) -> u32 {
    let x = if batch > 1 { ptr | stride_bytes } else { ptr };
    if x == 0 {
        256
    } else {
        1u32 << x.trailing_zeros().min(8)
    }
}

unsafe fn set_attr<T>(
    l: lts::cublasLtMatrixLayout_t,
    attr: lts::cublasLtMatrixLayoutAttribute_t,
    v: &T,
) -> Result<()> {
    lt::set_matrix_layout_attribute(
        l,
        attr,
        v as *const T as *const c_void,
        std::mem::size_of::<T>(),
    )
    .map_err(err)
}

unsafe fn make_plan(st: &LtState, key: &PlanKey) -> Result<Plan> {
    let s = key.shape;
    let (m, n, k) = (s.m as u64, s.n as u64, s.k as u64);
    let ty = match key.dtype {
        DType::F32 => lts::cudaDataType_t::CUDA_R_32F,
        DType::BF16 => lts::cudaDataType_t::CUDA_R_16BF,
    };
    let compute = if key.tf32 && key.dtype == DType::F32 {
        lts::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
    } else {
        lts::cublasComputeType_t::CUBLAS_COMPUTE_32F
    };
    let mut plan = Plan {
        desc: std::ptr::null_mut(),
        la: std::ptr::null_mut(),
        lb: std::ptr::null_mut(),
        lc: std::ptr::null_mut(),
        algo: lts::cublasLtMatmulAlgo_t { data: [0u64; 8] },
    };
    plan.desc = lt::create_matmul_desc(compute, lts::cudaDataType_t::CUDA_R_32F).map_err(err)?;
    let (op_a, op_b) = (s.trans_b as i32, s.trans_a as i32);
    for (attr, v) in [
        (
            lts::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
            &op_a,
        ),
        (
            lts::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB,
            &op_b,
        ),
    ] {
        lt::set_matmul_desc_attribute(plan.desc, attr, v as *const i32 as *const c_void, 4)
            .map_err(err)?;
    }
    // Column-major views of the stored matrices: rows, cols, leading dimension.
    let (ra, ca, lda) = if s.trans_b { (k, n, k) } else { (n, k, n) };
    let (rb, cb, ldb) = if s.trans_a { (m, k, m) } else { (k, m, k) };
    plan.la = lt::create_matrix_layout(ty, ra, ca, lda as i64).map_err(err)?;
    plan.lb = lt::create_matrix_layout(ty, rb, cb, ldb as i64).map_err(err)?;
    plan.lc = lt::create_matrix_layout(ty, n, m, n as i64).map_err(err)?;
    if s.batch > 1 {
        let batch = s.batch as i32;
        let (a_bs, _, _) = s.lhs_strides();
        let (b_bs, _, _) = s.rhs_strides();
        use lts::cublasLtMatrixLayoutAttribute_t as A;
        for (l, stride) in [
            (plan.la, b_bs as i64),
            (plan.lb, a_bs as i64),
            (plan.lc, (s.m * s.n) as i64),
        ] {
            set_attr(l, A::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch)?;
            set_attr(l, A::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride)?;
        }
    }
    let pref = lt::create_matmul_pref().map_err(err)?;
    let heuristic = (|| -> Result<lts::cublasLtMatmulHeuristicResult_t> {
        use lts::cublasLtMatmulPreferenceAttributes_t as P;
        let ws = st.workspace_size as u64;
        lt::set_matmul_pref_attribute(
            pref,
            P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            &ws as *const u64 as *const c_void,
            8,
        )
        .map_err(err)?;
        for (attr, v) in [
            (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align[1]),
            (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align[0]),
            (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align[2]),
            (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align[2]),
        ] {
            lt::set_matmul_pref_attribute(pref, attr, &v as *const u32 as *const c_void, 4)
                .map_err(err)?;
        }
        lt::get_matmul_algo_heuristic(
            st.handle, plan.desc, plan.la, plan.lb, plan.lc, plan.lc, pref,
        )
        .map_err(err)
    })();
    let _ = lt::destroy_matmul_pref(pref);
    let heuristic = heuristic?;
    if heuristic.workspaceSize > st.workspace_size {
        return Err(KernelError::runtime(
            "matmul (cuBLASLt)",
            "heuristic asks for a larger workspace",
        ));
    }
    plan.algo = heuristic.algo;
    Ok(plan)
}

/// Writes `op(A) @ op(B)` into `out` with cuBLASLt; blocks until the product is done.
pub fn cublaslt_matmul<F: KernelFloat>(
    client: &Client,
    a: &Handle,
    b: &Handle,
    out: &Handle,
    s: &MatmulShape,
    tf32: bool,
) -> Result<()> {
    let ra = client.get_resource::<CudaServer>(a.clone()).map_err(err)?;
    let rb = client.get_resource::<CudaServer>(b.clone()).map_err(err)?;
    let rc = client
        .get_resource::<CudaServer>(out.clone())
        .map_err(err)?;
    let (pa, pb, pc) = (ra.resource().ptr, rb.resource().ptr, rc.resource().ptr);
    cubecl::future::block_on(client.sync()).map_err(err)?;

    let ordinal = client.service_id().device.index_id as usize;
    let state = LT.get_or_try_init(&super::device_key(client), || init(ordinal))?;
    let mut guard = state
        .lock()
        .map_err(|_| KernelError::runtime("matmul (cuBLASLt)", "poisoned state"))?;
    let st = &mut *guard;
    st.ctx.bind_to_thread().map_err(err)?;
    let es = F::DTYPE.size() as u64;
    let (a_bs, _, _) = s.lhs_strides();
    let (b_bs, _, _) = s.rhs_strides();
    let align = [
        alignment(pa, s.batch, a_bs as u64 * es),
        alignment(pb, s.batch, b_bs as u64 * es),
        alignment(pc, s.batch, (s.m * s.n) as u64 * es),
    ];
    let key = PlanKey {
        shape: *s,
        dtype: F::DTYPE,
        tf32,
        align,
    };
    if !st.plans.contains_key(&key) {
        let plan = unsafe { make_plan(st, &key)? };
        st.plans.insert(key, plan);
    }
    let plan = &st.plans[&key];
    let (alpha, beta) = (1.0f32, 0.0f32);
    unsafe {
        lt::matmul(
            st.handle,
            plan.desc,
            &alpha as *const f32 as *const c_void,
            &beta as *const f32 as *const c_void,
            pb as *const c_void,
            plan.la,
            pa as *const c_void,
            plan.lb,
            pc as *const c_void,
            plan.lc,
            pc as *mut c_void,
            plan.lc,
            &plan.algo,
            st.workspace as *mut c_void,
            st.workspace_size,
            st.stream as lts::cudaStream_t,
        )
        .map_err(err)?;
        drv::stream::synchronize(st.stream).map_err(err)?;
    }
    drop(guard);
    drop((ra, rb, rc));
    Ok(())
}
