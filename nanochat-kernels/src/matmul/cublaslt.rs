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

/// The descriptors and algorithm of one (shape, dtype, precision, alignment). Plans are never
/// destroyed: like the handle, stream and workspace they live in [`LT`], a static, for the
/// whole process (a failed [`make_plan`] destroys what it created).
struct Plan {
    desc: lts::cublasLtMatmulDesc_t,
    la: lts::cublasLtMatrixLayout_t,
    lb: lts::cublasLtMatrixLayout_t,
    lc: lts::cublasLtMatrixLayout_t,
    algo: lts::cublasLtMatmulAlgo_t,
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

// SAFETY: the fields that are not `Send` are raw CUDA handles (stream, cuBLASLt handle and
// descriptors). CUDA lets any thread use them, one call at a time, once the context that owns
// them is current on that thread. An `LtState` is only reachable through its device's mutex in
// `LT` (so one thread uses it at a time), and every use binds `ctx` first.
unsafe impl Send for LtState {}

/// Per device (`cuda:0`, `cuda:1`, ...): workers on two GPUs never share a handle or a stream,
/// nor wait for each other's lock.
static LT: super::state::PerDevice<LtState> = super::state::PerDevice::new();

fn init(ordinal: usize) -> Result<LtState> {
    let ctx = cudarc::driver::CudaContext::new(ordinal).map_err(err)?;
    let major = ctx
        .attribute(drvs::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        .map_err(err)?;
    let workspace_size: usize = if major >= 9 { 32 << 20 } else { 4 << 20 };
    // SAFETY: `is_culib_present` only tries to load libcublasLt by name (loading a library
    // runs its initialisers, which cudarc cannot vouch for); it comes first because cudarc
    // panics on the first call into a library that is missing. `stream::create` and
    // `create_handle` make new handles owned by the state. `malloc_sync` allocates
    // `workspace_size` bytes in the current context, which `CudaContext::new` bound to this
    // thread; the pointer is kept in the state, which lives as long as the process, and is
    // only ever handed to cuBLASLt as a workspace of that size.
    let (stream, handle, workspace) = unsafe {
        if !lts::is_culib_present() {
            return Err(KernelError::unsupported(
                "matmul (cuBLASLt)",
                "libcublasLt was not found on the loader path",
            ));
        }
        let stream = drv::stream::create(drv::stream::StreamKind::NonBlocking).map_err(err)?;
        let handle = lt::create_handle().map_err(err)?;
        let workspace = drv::malloc_sync(workspace_size).map_err(err)?;
        (stream, handle, workspace)
    };
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

/// Creates the descriptors of `key` and asks cuBLASLt's heuristic for an algorithm that fits
/// the workspace. On an error, everything created here is destroyed again.
fn make_plan(st: &LtState, key: &PlanKey) -> Result<Plan> {
    use lts::cublasLtMatmulDescAttributes_t as D;
    use lts::cublasLtMatmulPreferenceAttributes_t as P;
    use lts::cublasLtMatrixLayoutAttribute_t as A;
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
    let (op_a, op_b) = (s.trans_b as i32, s.trans_a as i32);
    // Column-major views of the stored matrices: rows, cols, leading dimension.
    let (ra, ca, lda) = if s.trans_b { (k, n, k) } else { (n, k, n) };
    let (rb, cb, ldb) = if s.trans_a { (m, k, m) } else { (k, m, k) };
    let batch = s.batch as i32;
    let (a_bs, _, _) = s.lhs_strides();
    let (b_bs, _, _) = s.rhs_strides();
    let ws = st.workspace_size as u64;
    let mut plan = Plan {
        desc: std::ptr::null_mut(),
        la: std::ptr::null_mut(),
        lb: std::ptr::null_mut(),
        lc: std::ptr::null_mut(),
        algo: lts::cublasLtMatmulAlgo_t { data: [0u64; 8] },
    };
    let mut pref: lts::cublasLtMatmulPreference_t = std::ptr::null_mut();
    // SAFETY: every descriptor handed to cuBLASLt is one created just before by cuBLASLt (null
    // ones are skipped when destroying), and `st.handle` is the live handle of this device,
    // whose context the caller made current. Each attribute value is passed as a pointer to a
    // local that outlives the call, with that local's exact size (`size_of_val`), and with the
    // type cuBLASLt documents for the attribute (i32 for TRANSA/TRANSB and BATCH_COUNT, i64
    // for STRIDED_BATCH_OFFSET, u64 for MAX_WORKSPACE_BYTES, u32 for MIN_ALIGNMENT_*). On an
    // error the descriptors are destroyed once and not used again (`plan` is not returned).
    let algo = unsafe {
        let algo = (|| -> Result<lts::cublasLtMatmulAlgo_t> {
            plan.desc =
                lt::create_matmul_desc(compute, lts::cudaDataType_t::CUDA_R_32F).map_err(err)?;
            for (attr, v) in [
                (D::CUBLASLT_MATMUL_DESC_TRANSA, &op_a),
                (D::CUBLASLT_MATMUL_DESC_TRANSB, &op_b),
            ] {
                lt::set_matmul_desc_attribute(
                    plan.desc,
                    attr,
                    v as *const i32 as *const c_void,
                    std::mem::size_of_val(v),
                )
                .map_err(err)?;
            }
            plan.la = lt::create_matrix_layout(ty, ra, ca, lda as i64).map_err(err)?;
            plan.lb = lt::create_matrix_layout(ty, rb, cb, ldb as i64).map_err(err)?;
            plan.lc = lt::create_matrix_layout(ty, n, m, n as i64).map_err(err)?;
            if s.batch > 1 {
                for (l, stride) in [
                    (plan.la, b_bs as i64),
                    (plan.lb, a_bs as i64),
                    (plan.lc, (s.m * s.n) as i64),
                ] {
                    lt::set_matrix_layout_attribute(
                        l,
                        A::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                        &batch as *const i32 as *const c_void,
                        std::mem::size_of_val(&batch),
                    )
                    .map_err(err)?;
                    lt::set_matrix_layout_attribute(
                        l,
                        A::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                        &stride as *const i64 as *const c_void,
                        std::mem::size_of_val(&stride),
                    )
                    .map_err(err)?;
                }
            }
            pref = lt::create_matmul_pref().map_err(err)?;
            lt::set_matmul_pref_attribute(
                pref,
                P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &ws as *const u64 as *const c_void,
                std::mem::size_of_val(&ws),
            )
            .map_err(err)?;
            for (attr, v) in [
                (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align[1]),
                (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align[0]),
                (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align[2]),
                (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align[2]),
            ] {
                lt::set_matmul_pref_attribute(
                    pref,
                    attr,
                    &v as *const u32 as *const c_void,
                    std::mem::size_of_val(&v),
                )
                .map_err(err)?;
            }
            let heuristic = lt::get_matmul_algo_heuristic(
                st.handle, plan.desc, plan.la, plan.lb, plan.lc, plan.lc, pref,
            )
            .map_err(err)?;
            if heuristic.workspaceSize > st.workspace_size {
                return Err(KernelError::runtime(
                    "matmul (cuBLASLt)",
                    "heuristic asks for a larger workspace",
                ));
            }
            Ok(heuristic.algo)
        })();
        if !pref.is_null() {
            let _ = lt::destroy_matmul_pref(pref);
        }
        if algo.is_err() {
            for l in [plan.la, plan.lb, plan.lc] {
                if !l.is_null() {
                    let _ = lt::destroy_matrix_layout(l);
                }
            }
            if !plan.desc.is_null() {
                let _ = lt::destroy_matmul_desc(plan.desc);
            }
        }
        algo
    }?;
    plan.algo = algo;
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
    let op = "matmul (cuBLASLt)";
    crate::launch::check_size(op, "lhs", a, &[s.lhs_len()], F::DTYPE)?;
    crate::launch::check_size(op, "rhs", b, &[s.rhs_len()], F::DTYPE)?;
    crate::launch::check_size(op, "out", out, &[s.batch, s.m, s.n], F::DTYPE)?;
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
        let plan = make_plan(st, &key)?;
        st.plans.insert(key, plan);
    }
    let plan = &st.plans[&key];
    let (alpha, beta) = (1.0f32, 0.0f32);
    // SAFETY: `pa`, `pb` and `pc` are device pointers of the three cubecl buffers, pinned by
    // `ra`, `rb` and `rc` (held until after the wait below), and cubecl's stream was drained
    // (`client.sync()`), so nothing else touches them during the product. Their sizes were
    // checked against `s` above (`check_size` of lhs, rhs and out) and the plan's layouts
    // describe exactly `s`, so cuBLASLt reads and writes inside them. The plan, handle, stream and workspace (of
    // `workspace_size` bytes, at least what the plan's heuristic asked for) belong to this
    // device's state, whose lock we hold, with its context current (`bind_to_thread`). `alpha`
    // and `beta` are f32 scalars in host memory, as the f32 scale type of the plan's
    // descriptor requires. The product is waited for before the buffers are unpinned.
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
