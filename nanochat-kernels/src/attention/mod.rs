//! Causal self-attention with grouped-query heads: flash-style forward and backward (no T x T
//! matrix in memory), a decode path for one query against a KV cache, and the f64 reference.
//!
//! Two implementations of the forward and backward ([`AttentionKernel`]): the row kernels
//! (one unit per query or key row; GPUs, and any KV layout) and the key-blocked kernels (a unit
//! per block of rows with the keys along the vector lanes; the CPU runtime's fast path).
//! [`attention_forward`] and [`attention_backward`] pick one per device.
//!
//! Layouts follow the model's projections: q is (B, Tq, H, D), k and v (B, Tk, Hkv, D), the
//! output (B, Tq, H, D) and the saved logsumexp (B, H, Tq) in f32. Query head h reads kv head
//! `h / (H / Hkv)`. Query i sits at position `p = i + Tk - Tq` (Tq = Tk in training; a prefill
//! or decode step after a cached prefix has Tk > Tq) and attends keys `p - W ..= p` for a
//! left window W ([`AttentionShape::window`], nanochat HEAD's sliding window), `0..=p` without
//! one. The kernels skip the keys outside the window instead of masking them.
//! Scores are scaled by `1 / sqrt(D)`; statistics and accumulators are f32.

mod backward;
mod blocked;
mod blocked_backward;
mod decode;
mod forward;
mod reference;

pub use backward::{attention_backward_rows, BackwardInputs};
pub use blocked::attention_forward_blocked;
pub use blocked_backward::attention_backward_blocked;
pub use decode::attention_decode;
pub use forward::attention_forward_rows;
pub use reference::{attention_backward_ref, attention_forward_ref};

use cubecl::prelude::*;

use crate::check::{f64s, Check, Ctx};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::{launch, Client, Handle, KernelError, Result};

/// One implementation of the attention forward and backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// One unit per query row (dQ) or key row (dK, dV), dot products along `D`.
    Rows,
    /// A unit per block of rows, keys (or queries) along the vector lanes; contiguous K, V.
    KeyBlocked,
}

impl AttentionKernel {
    /// Every attention kernel, for checks and benchmarks that compare them.
    pub const ALL: [AttentionKernel; 2] = [AttentionKernel::Rows, AttentionKernel::KeyBlocked];

    /// The kernel for this device and KV layout: key-blocked on the CPU runtime for contiguous
    /// K, V (its units are few, wide SIMD cores), rows elsewhere.
    pub fn for_device(client: &Client, s: &AttentionShape, kv: &KvLayout) -> Self {
        if DeviceInfo::of(client).blocked && *kv == KvLayout::contiguous(s) {
            AttentionKernel::KeyBlocked
        } else {
            AttentionKernel::Rows
        }
    }
}

/// Causal attention of `q` (B, Tq, H, D) over `k`, `v` laid out as `kv` says; query i sits at
/// position `i + Tk - Tq`. Returns the output (B, Tq, H, D) and the logsumexp (B, H, Tq, f32).
pub fn attention_forward<F: KernelFloat>(
    client: &Client,
    q: &Handle,
    k: &Handle,
    v: &Handle,
    s: &AttentionShape,
    kv: &KvLayout,
) -> Result<(Handle, Handle)> {
    let kernel = AttentionKernel::for_device(client, s, kv);
    attention_forward_with::<F>(client, kernel, [q, k, v], s, kv)
}

/// [`attention_forward`] with a given kernel (the key-blocked one needs the contiguous layout),
/// of `[q, k, v]`.
pub fn attention_forward_with<F: KernelFloat>(
    client: &Client,
    kernel: AttentionKernel,
    qkv: [&Handle; 3],
    s: &AttentionShape,
    kv: &KvLayout,
) -> Result<(Handle, Handle)> {
    match kernel {
        AttentionKernel::Rows => attention_forward_rows::<F>(client, qkv, s, kv),
        AttentionKernel::KeyBlocked if *kv == KvLayout::contiguous(s) => {
            attention_forward_blocked::<F>(client, qkv, s)
        }
        AttentionKernel::KeyBlocked => Err(KernelError::unsupported(
            "attention",
            format!("the key-blocked kernel needs contiguous K, V, not {kv:?}"),
        )),
    }
}

/// Gradients (dq, dk, dv) of [`attention_forward`] for contiguous `q`, `k`, `v`, from the
/// forward's `out` and `lse` and the incoming gradient `dout` (B, Tq, H, D).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<F: KernelFloat>(
    client: &Client,
    q: &Handle,
    k: &Handle,
    v: &Handle,
    out: &Handle,
    lse: &Handle,
    dout: &Handle,
    s: &AttentionShape,
) -> Result<(Handle, Handle, Handle)> {
    let kernel = AttentionKernel::for_device(client, s, &KvLayout::contiguous(s));
    let x = BackwardInputs::new([q, k, v], (out, lse), dout);
    attention_backward_with::<F>(client, kernel, &x, s)
}

/// [`attention_backward`] with a given kernel, for the inputs `x`.
pub fn attention_backward_with<F: KernelFloat>(
    client: &Client,
    kernel: AttentionKernel,
    x: &BackwardInputs,
    s: &AttentionShape,
) -> Result<(Handle, Handle, Handle)> {
    match kernel {
        AttentionKernel::Rows => attention_backward_rows::<F>(client, x, s),
        AttentionKernel::KeyBlocked => attention_backward_blocked::<F>(client, x, s),
    }
}

/// Sizes of an attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttentionShape {
    /// Sequences in the batch (B).
    pub batch: usize,
    /// Query positions.
    pub tq: usize,
    /// Key/value positions (>= tq).
    pub tk: usize,
    /// Query heads (H).
    pub heads: usize,
    /// Key/value heads (Hkv, dividing H: grouped-query attention when fewer).
    pub kv_heads: usize,
    /// Elements per head (D).
    pub head_dim: usize,
    /// The left window W: the query at position p sees keys `p - W ..= p` (W + 1 of them;
    /// nanochat HEAD's sliding window, FA3's `window_size=(W, 0)`). `usize::MAX`: every key up
    /// to p (plain causal).
    pub window: usize,
}

impl AttentionShape {
    /// Self-attention over one sequence length (training), plain causal.
    pub fn new(batch: usize, t: usize, heads: usize, kv_heads: usize, head_dim: usize) -> Self {
        Self::prefixed(batch, t, t, heads, kv_heads, head_dim)
    }

    /// `tq` queries after a cached prefix of `tk - tq` positions (prefill or decode), plain
    /// causal.
    pub const fn prefixed(
        batch: usize,
        tq: usize,
        tk: usize,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> Self {
        AttentionShape {
            batch,
            tq,
            tk,
            heads,
            kv_heads,
            head_dim,
            window: usize::MAX,
        }
    }

    /// The same sizes with left window `window` (see [`AttentionShape::window`]).
    pub const fn with_window(self, window: usize) -> Self {
        AttentionShape { window, ..self }
    }

    /// The window as the kernels take it: at most `tk` (which already means "every key").
    pub(crate) fn kernel_window(&self) -> usize {
        self.window.min(self.tk)
    }

    /// The first key query `i` sees (its position minus the window, or 0).
    pub fn first_key(&self, i: usize) -> usize {
        (i + self.tk - self.tq).saturating_sub(self.window)
    }

    /// Query-key pairs each head computes: the causal triangle (after a cached prefix), cut to
    /// the window.
    pub fn pairs(&self) -> f64 {
        (0..self.tq)
            .map(|i| (i + self.tk - self.tq + 1 - self.first_key(i)) as f64)
            .sum()
    }

    /// The softmax scale, 1 / sqrt(D).
    pub fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }

    /// Checks that every size is positive, that H is a multiple of Hkv and that tk >= tq.
    ///
    /// # Errors
    /// [`KernelError::Shape`] naming `op` and the sizes.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        let s = self;
        let dims = [s.batch, s.tq, s.tk, s.heads, s.kv_heads, s.head_dim];
        let fail = |why: String| Err(KernelError::shape(op, &[&dims], why));
        if dims.contains(&0) {
            return fail("every size must be positive".into());
        }
        if !s.heads.is_multiple_of(s.kv_heads) {
            return fail(format!(
                "n_head {} is not a multiple of n_kv_head {}",
                s.heads, s.kv_heads
            ));
        }
        if s.tk < s.tq {
            return fail(format!(
                "{} keys cannot serve {} causal queries",
                s.tk, s.tq
            ));
        }
        Ok(())
    }

    /// The launch argument of the attention kernels for this shape, with k and v laid out as
    /// `kv` and read as vectors of `vs` elements.
    pub(crate) fn args(&self, kv: &KvLayout, vs: usize) -> AttnArgsLaunch {
        AttnArgsLaunch::new(
            self.tq,
            self.tk,
            self.heads,
            self.kv_heads,
            self.heads / self.kv_heads,
            self.scale() as f32,
            kv.batch_stride / vs,
            kv.row_stride / vs,
            self.kernel_window(),
        )
    }

    /// Query rows (B * H * Tq).
    pub(crate) fn q_rows(&self) -> usize {
        self.batch * self.heads * self.tq
    }

    /// Key rows (B * Hkv * Tk).
    pub(crate) fn k_rows(&self) -> usize {
        self.batch * self.kv_heads * self.tk
    }

    /// Checks `s` ([`AttentionShape::validate`]), `q` (B, Tq, H, D) and k, v laid out as `kv`.
    pub(crate) fn check_qkv<F: KernelFloat>(
        &self,
        op: &'static str,
        [q, k, v]: [&Handle; 3],
        kv: &KvLayout,
    ) -> Result<()> {
        self.validate(op)?;
        let q_dims = [self.batch, self.tq, self.heads, self.head_dim];
        launch::check_size(op, "q", q, &q_dims, F::DTYPE)?;
        kv.check::<F>(op, k, v, self)
    }

    /// Multiply-adds x2 of the forward (QK^T and PV over the visible query-key pairs).
    pub fn forward_flops(&self) -> f64 {
        4.0 * self.batch as f64 * self.heads as f64 * self.pairs() * self.head_dim as f64
    }
}

/// The sizes and softmax scale every attention kernel reads, passed as one launch argument
/// (built by [`AttentionShape::args`]).
#[derive(CubeLaunch, CubeType)]
pub(crate) struct AttnArgs {
    /// Query positions.
    pub tq: usize,
    /// Key/value positions.
    pub tk: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Query heads per kv head (`heads / kv_heads`).
    pub group: usize,
    /// The softmax scale, 1 / sqrt(D), in f32.
    pub scale: f32,
    /// Vectors from one sequence's k, v rows to the next's ([`KvLayout::batch_stride`]).
    pub kv_batch_stride: usize,
    /// Vectors from one position's k, v row to the next's ([`KvLayout::row_stride`]).
    pub kv_row_stride: usize,
    /// The left window, at most `tk` ([`AttentionShape::window`]).
    pub window: usize,
}

/// `(i, bh, h, b)` of query row `r` in (b, h, i) order: its position, its (batch, head) index,
/// its head and its batch.
#[cube]
pub(crate) fn query_row(r: usize, tq: usize, heads: usize) -> (usize, usize, usize, usize) {
    let i = r % tq;
    let bh = r / tq;
    (i, bh, bh % heads, bh / heads)
}

/// Where rows of k and v live: element (b, t, hk, d) is at `b * batch_stride + t * row_stride +
/// hk * D + d` (elements). Contiguous tensors have `row_stride = Hkv * D`, `batch_stride =
/// Tk * row_stride`; a KV cache of capacity C has `batch_stride = C * row_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    /// Elements from one sequence's rows to the next's.
    pub batch_stride: usize,
    /// Elements from one position's row to the next's.
    pub row_stride: usize,
}

impl KvLayout {
    /// The layout of contiguous (B, Tk, Hkv, D) tensors.
    pub fn contiguous(s: &AttentionShape) -> Self {
        let row_stride = s.kv_heads * s.head_dim;
        KvLayout {
            batch_stride: s.tk * row_stride,
            row_stride,
        }
    }

    /// A cache of `capacity` positions per batch row.
    pub fn cache(s: &AttentionShape, capacity: usize) -> Self {
        let row_stride = s.kv_heads * s.head_dim;
        KvLayout {
            batch_stride: capacity * row_stride,
            row_stride,
        }
    }

    /// The vector width of the row and decode kernels: the widest dividing `D` and both strides.
    fn vector_size<F: KernelFloat>(&self, client: &Client, s: &AttentionShape) -> usize {
        let dims = [
            s.head_dim,
            self.row_stride,
            self.batch_stride.max(s.head_dim),
        ];
        launch::vector_size(client, F::DTYPE.size(), &dims)
    }

    /// Elements spanned by k (or v).
    fn len(&self, s: &AttentionShape) -> usize {
        (s.batch - 1) * self.batch_stride + (s.tk - 1) * self.row_stride + s.kv_heads * s.head_dim
    }

    fn check<F: KernelFloat>(
        &self,
        op: &'static str,
        k: &Handle,
        v: &Handle,
        s: &AttentionShape,
    ) -> Result<()> {
        if self.row_stride < s.kv_heads * s.head_dim
            || self.batch_stride < s.tk * self.row_stride && s.batch > 1
        {
            return Err(KernelError::unsupported(
                op,
                format!("KV layout {self:?} overlaps rows for {s:?}"),
            ));
        }
        launch::check_size(op, "k", k, &[self.len(s)], F::DTYPE)?;
        launch::check_size(op, "v", v, &[self.len(s)], F::DTYPE)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Checks

pub(crate) fn checks() -> Vec<Check> {
    crate::check::check_list![
        "attention.forward" => check_forward,
        "attention.backward" => check_backward,
        "attention.decode" => check_decode,
    ]
}

/// MHA, GQA, MQA, size 1, odd lengths, a cached prefix (tk > tq).
const SHAPES: [AttentionShape; 7] = [
    AttentionShape::prefixed(1, 1, 1, 1, 1, 2),
    AttentionShape::prefixed(2, 7, 7, 3, 3, 6),
    AttentionShape::prefixed(1, 13, 13, 4, 2, 10),
    AttentionShape::prefixed(2, 9, 9, 4, 1, 16),
    AttentionShape::prefixed(1, 5, 12, 2, 1, 8),
    AttentionShape::prefixed(1, 33, 33, 2, 2, 34),
    AttentionShape::prefixed(1, 70, 70, 1, 1, 64),
];

/// Shapes whose lengths and head size are multiples of the CPU's widest vectors (so the
/// key-blocked kernels run with 8- and 16-wide lanes, crossing key blocks and the diagonal
/// inside a block), with a cached prefix and GQA.
const BLOCKED_SHAPES: [AttentionShape; 4] = [
    AttentionShape::prefixed(1, 48, 48, 4, 2, 32),
    AttentionShape::prefixed(2, 16, 16, 2, 1, 16),
    AttentionShape::prefixed(1, 32, 64, 3, 1, 16),
    AttentionShape::prefixed(1, 40, 40, 2, 2, 8),
];

/// Every checked shape: [`SHAPES`] and [`BLOCKED_SHAPES`], each plain causal and with sliding
/// windows (one key, a third of the keys: blocks wholly outside the window, and windows that
/// start inside a block).
fn checked_shapes() -> Vec<AttentionShape> {
    SHAPES
        .into_iter()
        .chain(BLOCKED_SHAPES)
        .flat_map(|s| {
            let mut out = vec![s];
            if s.tk > 2 {
                out.push(s.with_window(1));
                out.push(s.with_window(s.tk / 3));
            }
            out
        })
        .collect()
}

fn rand_qkv(ctx: &mut Ctx, s: &AttentionShape) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let nq = s.batch * s.tq * s.heads * s.head_dim;
    let nk = s.batch * s.tk * s.kv_heads * s.head_dim;
    (
        ctx.rand(nq, -1.5, 1.5),
        ctx.rand(nk, -1.5, 1.5),
        ctx.rand(nk, -1.0, 1.0),
    )
}

fn check_forward(ctx: &mut Ctx) -> Result<()> {
    for s in checked_shapes() {
        let (q, k, v) = rand_qkv(ctx, &s);
        let (hq, hk, hv) = (ctx.upload(&q), ctx.upload(&k), ctx.upload(&v));
        let (want_o, want_l) = attention_forward_ref(&f64s(&q), &f64s(&k), &f64s(&v), &s);
        for kernel in AttentionKernel::ALL {
            let (ho, hl) = crate::with_float!(ctx.dtype, F =>
                attention_forward_with::<F>(ctx.client, kernel, [&hq, &hk, &hv], &s, &KvLayout::contiguous(&s)))?;
            let got_o = ctx.download(&ho)?;
            let got_l = crate::check::download(ctx.client, crate::DType::F32, &hl)?;
            let tol = ctx.tol(8.0);
            let case = format!("{kernel:?} {s:?}");
            ctx.compare("attention.forward out", &case, &got_o, &want_o, tol);
            ctx.compare("attention.forward lse", &case, &got_l, &want_l, 1e-5);
        }
    }
    Ok(())
}

fn check_backward(ctx: &mut Ctx) -> Result<()> {
    for s in checked_shapes() {
        let (q, k, v) = rand_qkv(ctx, &s);
        let dout = ctx.rand(q.len(), -1.0, 1.0);
        let (hq, hk, hv, hg) = (
            ctx.upload(&q),
            ctx.upload(&k),
            ctx.upload(&v),
            ctx.upload(&dout),
        );
        let (wq, wk, wv) =
            attention_backward_ref(&f64s(&q), &f64s(&k), &f64s(&v), &f64s(&dout), &s);
        for kernel in AttentionKernel::ALL {
            let (dq, dk, dv) = crate::with_float!(ctx.dtype, F => {
                let (ho, hl) = attention_forward_rows::<F>(ctx.client, [&hq, &hk, &hv], &s, &KvLayout::contiguous(&s))?;
                let x = BackwardInputs::new([&hq, &hk, &hv], (&ho, &hl), &hg);
                attention_backward_with::<F>(ctx.client, kernel, &x, &s)
            })?;
            let case = format!("{kernel:?} {s:?}");
            let tol = ctx.tol(16.0);
            let got = ctx.download(&dq)?;
            ctx.compare("attention.backward dq", &case, &got, &wq, tol);
            let got = ctx.download(&dk)?;
            ctx.compare("attention.backward dk", &case, &got, &wk, tol);
            let got = ctx.download(&dv)?;
            ctx.compare("attention.backward dv", &case, &got, &wv, tol);
        }
    }
    Ok(())
}

fn check_decode(ctx: &mut Ctx) -> Result<()> {
    for (batch, len, heads, kv_heads, head_dim, capacity, window) in [
        (1, 1, 1, 1, 2, 1, usize::MAX),
        (2, 9, 4, 2, 6, 16, usize::MAX),
        (1, 37, 3, 1, 34, 40, usize::MAX),
        (3, 100, 2, 2, 64, 101, usize::MAX),
        (2, 9, 4, 2, 6, 16, 3),
        (3, 100, 2, 2, 64, 101, 40),
        (1, 37, 3, 1, 34, 40, 0),
    ] {
        // A cache of `capacity` positions holding `len`; the query is the last position.
        let s =
            AttentionShape::prefixed(batch, 1, len, heads, kv_heads, head_dim).with_window(window);
        let row = kv_heads * head_dim;
        let cache_len = batch * capacity * row;
        let kc = ctx.rand(cache_len, -1.5, 1.5);
        let vc = ctx.rand(cache_len, -1.0, 1.0);
        let q = ctx.rand(batch * heads * head_dim, -1.5, 1.5);
        let (hq, hk, hv) = (ctx.upload(&q), ctx.upload(&kc), ctx.upload(&vc));
        let layout = KvLayout::cache(&s, capacity);
        let out = crate::with_float!(ctx.dtype, F => attention_decode::<F>(ctx.client, &hq, &hk, &hv, &s, &layout))?;
        // Reference on the contiguous prefix of the cache.
        let prefix = |c: &[f32]| -> Vec<f64> {
            (0..batch)
                .flat_map(|b| f64s(&c[b * capacity * row..][..len * row]))
                .collect()
        };
        let (want, _) = attention_forward_ref(&f64s(&q), &prefix(&kc), &prefix(&vc), &s);
        let got = ctx.download(&out)?;
        let tol = ctx.tol(8.0);
        let label = format!("{s:?} capacity={capacity}");
        ctx.compare("attention.decode", &label, &got, &want, tol);
        // The general forward over the same cache layout agrees too.
        let (fwd, _) = crate::with_float!(ctx.dtype, F => attention_forward::<F>(ctx.client, &hq, &hk, &hv, &s, &layout))?;
        let got = ctx.download(&fwd)?;
        let label = format!("{s:?} capacity={capacity}");
        ctx.compare("attention.forward (cache layout)", &label, &got, &want, tol);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::check::check_tests!(forward_matches_reference => "attention.forward", backward_matches_reference => "attention.backward", decode_matches_reference => "attention.decode");

    #[test]
    fn invalid_shapes_are_errors() {
        assert!(AttentionShape::new(1, 4, 3, 2, 8)
            .validate("t")
            .unwrap_err()
            .to_string()
            .contains("n_kv_head"));
        assert!(AttentionShape {
            tq: 5,
            tk: 4,
            ..AttentionShape::new(1, 4, 2, 2, 8)
        }
        .validate("t")
        .is_err());
        assert!(AttentionShape::new(0, 4, 2, 2, 8).validate("t").is_err());
    }

    #[test]
    fn a_window_counts_only_the_pairs_it_sees() {
        let full = AttentionShape::new(1, 2048, 2, 2, 128);
        assert_eq!(full.pairs(), 2048.0 * 2049.0 / 2.0);
        // T 2048, window 512: 513 keys per query once past the window's start.
        let s = full.with_window(512);
        assert_eq!(s.pairs(), (513.0 * 514.0 / 2.0) + (2048.0 - 513.0) * 513.0);
        assert!((s.pairs() / full.pairs() - 0.4381).abs() < 1e-4);
        assert_eq!(
            (s.first_key(0), s.first_key(512), s.first_key(513)),
            (0, 0, 1)
        );
        // A decode query at position 99 with window 40 sees keys 59..=99.
        let d = AttentionShape::prefixed(1, 1, 100, 2, 2, 128).with_window(40);
        assert_eq!((d.first_key(0), d.pairs()), (59, 41.0));
    }
}
