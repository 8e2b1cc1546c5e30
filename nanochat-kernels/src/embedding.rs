//! Embedding gather (`out[n] = wte[ids[n]]`) and its backward, a scatter-add where repeated ids
//! accumulate.
//!
//! The backward is deterministic and needs no atomics: the ids (known on the host) are grouped
//! by vocabulary row into a CSR list (`offsets`, `positions`), and each unit sums, for one
//! (row, vector of channels), the gradients of the positions holding that id, in f32. Every
//! element of `dwte` is written exactly once (rows never used get zeros).

use cubecl::prelude::*;

use crate::check::{f64s, Check, Ctx};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index};
use crate::{Client, Handle, KernelError, Result};

#[cube(launch)]
fn embedding_forward_kernel<F: Float, N: Size>(
    wte: &[Vector<F, N>],
    ids: &[u32],
    out: &mut [Vector<F, N>],
    vecs_per_row: usize,
    steps: usize,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < out.len() {
            let n = i / vecs_per_row;
            let c = i % vecs_per_row;
            out[i] = wte[ids[n] as usize * vecs_per_row + c];
        }
    }
}

#[cube(launch)]
fn embedding_backward_kernel<F: Float, N: Size>(
    grad: &[Vector<F, N>],
    offsets: &[u32],
    positions: &[u32],
    dwte: &mut [Vector<F, N>],
    vecs_per_row: usize,
    steps: usize,
    #[comptime] blocked: bool,
    #[comptime] round_each: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < dwte.len() {
            let v = i / vecs_per_row;
            let c = i % vecs_per_row;
            let mut acc = Vector::<f32, N>::new(0.0);
            let end = offsets[v + 1] as usize;
            let mut p = offsets[v] as usize;
            while p < end {
                acc += Vector::<f32, N>::cast_from(grad[positions[p] as usize * vecs_per_row + c]);
                if round_each {
                    // Each partial sum stored in F, as an F-typed `grad_weight[k] += grad[p]`.
                    acc = Vector::<f32, N>::cast_from(Vector::<F, N>::cast_from(acc));
                }
                p += 1;
            }
            dwte[i] = Vector::cast_from(acc);
        }
    }
}

fn check_ids(op: &'static str, ids: &[u32], vocab: usize) -> Result<()> {
    if let Some((pos, id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
        return Err(KernelError::unsupported(
            op,
            format!("token id {id} at position {pos} is outside the vocabulary of {vocab}"),
        ));
    }
    Ok(())
}

fn upload_u32(client: &Client, v: &[u32]) -> Handle {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    client.create_from_slice(&bytes)
}

/// Gathers rows of `wte` (vocab, dim) for each id: returns (ids.len(), dim).
pub fn embedding_forward<F: KernelFloat>(
    client: &Client,
    wte: &Handle,
    vocab: usize,
    dim: usize,
    ids: &[u32],
) -> Result<Handle> {
    launch::check_size("embedding", "wte", wte, &[vocab, dim], F::DTYPE)?;
    check_ids("embedding", ids, vocab)?;
    let out = client.empty(ids.len() * dim * F::DTYPE.size());
    if ids.is_empty() || dim == 0 {
        return Ok(out);
    }
    let hids = upload_u32(client, ids);
    let vs = launch::vector_size(client, F::DTYPE.size(), &[dim]);
    let n = ids.len() * dim / vs;
    let g = launch::elemwise(&DeviceInfo::of(client), n);
    embedding_forward_kernel::launch::<F>(
        client,
        g.cube_count,
        g.cube_dim,
        vs,
        launch::buffer(
            "embedding_forward",
            "wte",
            wte,
            vocab * dim / vs,
            vs * F::DTYPE.size(),
        )?,
        launch::buffer("embedding_forward", "ids", &hids, ids.len(), 4)?,
        launch::buffer("embedding_forward", "out", &out, n, vs * F::DTYPE.size())?,
        dim / vs,
        g.steps,
        g.blocked,
    );
    Ok(out)
}

/// Scatter-add of `grad` (ids.len(), dim) into a new (vocab, dim) gradient of the table.
pub fn embedding_backward<F: KernelFloat>(
    client: &Client,
    grad: &Handle,
    ids: &[u32],
    vocab: usize,
    dim: usize,
) -> Result<Handle> {
    embedding_backward_impl::<F>(client, grad, ids, vocab, dim, false)
}

/// [`embedding_backward`] with every partial sum rounded to `F`: a row's gradient is
/// `(((g_p1 + g_p2) + g_p3) + ...)` over its positions in order, each `+` rounded to `F`, as
/// PyTorch's CPU `embedding_dense_backward` accumulates into a bf16 `grad_weight`
/// (`grad_weight[k].add_(grad[i])` per position). For `F = f32` it equals the f32 sum in
/// position order. Used to reproduce nanochat's bf16-stored embeddings exactly.
pub fn embedding_backward_sequential<F: KernelFloat>(
    client: &Client,
    grad: &Handle,
    ids: &[u32],
    vocab: usize,
    dim: usize,
) -> Result<Handle> {
    embedding_backward_impl::<F>(client, grad, ids, vocab, dim, true)
}

fn embedding_backward_impl<F: KernelFloat>(
    client: &Client,
    grad: &Handle,
    ids: &[u32],
    vocab: usize,
    dim: usize,
    round_each: bool,
) -> Result<Handle> {
    launch::check_size(
        "embedding_backward",
        "grad",
        grad,
        &[ids.len(), dim],
        F::DTYPE,
    )?;
    check_ids("embedding_backward", ids, vocab)?;
    if ids.is_empty() {
        // No token: every row's gradient is zero (and `grad` may hold no bytes at all).
        return crate::elementwise::fill::<F>(client, vocab * dim, 0.0);
    }
    let out = client.empty(vocab * dim * F::DTYPE.size());
    if vocab == 0 || dim == 0 {
        return Ok(out);
    }
    // CSR grouping of positions by id (counting sort: stable, so sums run in position order).
    let mut offsets = vec![0u32; vocab + 1];
    for &id in ids {
        offsets[id as usize + 1] += 1;
    }
    for v in 0..vocab {
        offsets[v + 1] += offsets[v];
    }
    let mut next = offsets.clone();
    let mut positions = vec![0u32; ids.len()];
    for (p, &id) in ids.iter().enumerate() {
        positions[next[id as usize] as usize] = p as u32;
        next[id as usize] += 1;
    }
    let vs = launch::vector_size(client, F::DTYPE.size(), &[dim]);
    let n = vocab * dim / vs;
    let g = launch::elemwise(&DeviceInfo::of(client), n);
    let grad_len = ids.len() * dim / vs;
    embedding_backward_kernel::launch::<F>(
        client,
        g.cube_count,
        g.cube_dim,
        vs,
        launch::buffer(
            "embedding_backward",
            "grad",
            grad,
            grad_len,
            vs * F::DTYPE.size(),
        )?,
        launch::buffer(
            "embedding_backward",
            "offsets",
            &upload_u32(client, &offsets),
            vocab + 1,
            4,
        )?,
        launch::buffer(
            "embedding_backward",
            "positions",
            &upload_u32(client, &positions),
            positions.len(),
            4,
        )?,
        launch::buffer("embedding_backward", "dwte", &out, n, vs * F::DTYPE.size())?,
        dim / vs,
        g.steps,
        g.blocked,
        round_each,
    );
    Ok(out)
}

/// Plain-Rust reference of [`embedding_forward`].
pub fn embedding_forward_ref(wte: &[f64], dim: usize, ids: &[u32]) -> Vec<f64> {
    ids.iter()
        .flat_map(|&id| {
            wte[id as usize * dim..(id as usize + 1) * dim]
                .iter()
                .copied()
        })
        .collect()
}

/// Plain-Rust reference of [`embedding_backward`].
pub fn embedding_backward_ref(grad: &[f64], ids: &[u32], vocab: usize, dim: usize) -> Vec<f64> {
    let mut out = vec![0.0; vocab * dim];
    for (p, &id) in ids.iter().enumerate() {
        for c in 0..dim {
            out[id as usize * dim + c] += grad[p * dim + c];
        }
    }
    out
}

/// Plain-Rust reference of [`embedding_backward_sequential`]: `round` stores a partial sum in
/// the kernel's dtype.
pub fn embedding_backward_sequential_ref(
    grad: &[f64],
    ids: &[u32],
    vocab: usize,
    dim: usize,
    round: impl Fn(f64) -> f64,
) -> Vec<f64> {
    let mut out = vec![0.0; vocab * dim];
    for (p, &id) in ids.iter().enumerate() {
        for c in 0..dim {
            let o = &mut out[id as usize * dim + c];
            *o = round(*o + grad[p * dim + c]);
        }
    }
    out
}

pub(crate) fn checks() -> Vec<Check> {
    crate::check::check_list!["embedding" => check_embedding]
}

fn check_embedding(ctx: &mut Ctx) -> Result<()> {
    use rand::Rng;
    for (vocab, dim, n) in [
        (1, 1, 1),
        (5, 7, 9),
        (13, 33, 40),
        (50, 64, 7),
        (3, 129, 17),
        (300, 48, 1000),
    ] {
        let case = format!("vocab={vocab} dim={dim} tokens={n}");
        let wte = ctx.rand(vocab * dim, -1.0, 1.0);
        // Few distinct ids, so repeats are certain.
        let ids: Vec<u32> = (0..n)
            .map(|_| ctx.rng.random_range(0..vocab.div_ceil(2) as u32))
            .collect();
        let hw = ctx.upload(&wte);
        let out = crate::with_float!(ctx.dtype, F => embedding_forward::<F>(ctx.client, &hw, vocab, dim, &ids))?;
        let got = ctx.download(&out)?;
        let expected = embedding_forward_ref(&f64s(&wte), dim, &ids);
        ctx.compare("embedding.forward", &case, &got, &expected, 0.0);

        let grad = ctx.rand(n * dim, -1.0, 1.0);
        let hg = ctx.upload(&grad);
        let dw = crate::with_float!(ctx.dtype, F => embedding_backward::<F>(ctx.client, &hg, &ids, vocab, dim))?;
        let got = ctx.download(&dw)?;
        let want = embedding_backward_ref(&f64s(&grad), &ids, vocab, dim);
        let tol = ctx.tol(4.0);
        ctx.compare("embedding.backward", &case, &got, &want, tol);

        // Rounded after every add, in the kernel's dtype: exact against the same rounding.
        let dw = crate::with_float!(ctx.dtype, F => embedding_backward_sequential::<F>(ctx.client, &hg, &ids, vocab, dim))?;
        let got = ctx.download(&dw)?;
        let dtype = ctx.dtype;
        let round = |x: f64| dtype.decode(&dtype.encode(&[x as f32]))[0] as f64;
        let want = embedding_backward_sequential_ref(&f64s(&grad), &ids, vocab, dim, round);
        ctx.compare("embedding.backward_sequential", &case, &got, &want, 0.0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    crate::check::check_tests!(embedding_matches_reference => "embedding");

    #[test]
    fn no_ids_give_zero_gradients() {
        // A batch without tokens: the gradient buffer holds nothing (0 bytes).
        let client = crate::Backend::Cpu.client().unwrap();
        let grad = crate::check::upload_f32(&client, &[]);
        let dwte = super::embedding_backward::<f32>(&client, &grad, &[], 3, 4).unwrap();
        let got = crate::check::download(&client, crate::DType::F32, &dwte).unwrap();
        assert_eq!(got, vec![0.0; 12]);
        let out = super::embedding_forward::<f32>(&client, &dwte, 3, 4, &[]).unwrap();
        assert_eq!(
            crate::check::download(&client, crate::DType::F32, &out).unwrap(),
            Vec::<f32>::new()
        );
    }

    #[test]
    fn out_of_vocabulary_id_is_an_error() {
        let client = crate::Backend::Cpu.client().unwrap();
        let wte = crate::check::upload_f32(&client, &[0.0; 6]);
        let err = super::embedding_forward::<f32>(&client, &wte, 3, 2, &[0, 3]).unwrap_err();
        assert!(
            err.to_string().contains("token id 3 at position 1"),
            "{err}"
        );
    }
}
