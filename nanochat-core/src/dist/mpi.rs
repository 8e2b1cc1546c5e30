//! The MPI backend (feature `mpi`): rsmpi over the system's MPI (Debian's OpenMPI 4.1 is what
//! CI builds against). Buffers are host memory; every call is serialised by a mutex (MPI is
//! initialised at `MPI_THREAD_SERIALIZED`, since the training loop calls collectives from the
//! device's runner thread, not always the main one). MPI's default error handler aborts the
//! job on a failed collective, and `mpirun` ends every rank when one dies.

use std::sync::Mutex;

use ::mpi::collective::SystemOperation;
use ::mpi::datatype::PartitionMut;
use ::mpi::environment::{Threading, Universe};
use ::mpi::topology::{Communicator as _, SimpleCommunicator};
use ::mpi::traits::{Root as _, *};
use ::mpi::Count;

use super::{check_root, Communicator, ReduceOp};
use crate::{CoreError, Result};

/// The world communicator of an MPI job, with the node-local split (which ranks share a
/// machine: `MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`).
pub struct MpiComm {
    world: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
    local_rank: usize,
    local_size: usize,
}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MpiComm(rank {} of {}, local {} of {})",
            self.rank, self.size, self.local_rank, self.local_size
        )
    }
}

// SAFETY: the communicator handle is only used under `world`'s mutex, one call at a time, and
// MPI was initialised at MPI_THREAD_SERIALIZED (checked in `init`), which allows calls from any
// thread as long as they do not overlap.
unsafe impl Send for MpiComm {}
// SAFETY: as for Send: every use goes through the mutex.
unsafe impl Sync for MpiComm {}

impl MpiComm {
    /// Initialises MPI (once per process) and returns its universe (which finalises MPI when
    /// dropped) and the world communicator. Errors: [`CoreError::Unsupported`] when MPI was
    /// already initialised or offers less than serialised threading.
    pub fn init() -> Result<(Universe, MpiComm)> {
        let (universe, threading) = ::mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| CoreError::Unsupported {
                op: "MPI",
                why: "MPI was already initialised in this process".into(),
            })?;
        if threading < Threading::Serialized {
            return Err(CoreError::Unsupported {
                op: "MPI",
                why: format!("this MPI offers {threading:?} threading; nanochat needs Serialized"),
            });
        }
        let world = universe.world();
        let local = world.split_shared(world.rank());
        let comm = MpiComm {
            rank: world.rank() as usize,
            size: world.size() as usize,
            local_rank: local.rank() as usize,
            local_size: local.size() as usize,
            world: Mutex::new(world),
        };
        tracing::debug!(?comm, "MPI initialised");
        Ok((universe, comm))
    }

    /// In place: the sum over ranks, or the mean (the sum divided by `world`, the world size
    /// in `T`).
    fn all_reduce<T>(&self, buf: &mut [T], op: ReduceOp, world: T) -> Result<()>
    where
        T: Equivalence + Copy + std::ops::DivAssign,
    {
        Count::try_from(buf.len()).map_err(|_| too_big(buf.len()))?;
        let send = buf.to_vec();
        self.with(|w| w.all_reduce_into(&send[..], buf, SystemOperation::sum()));
        if op == ReduceOp::Mean {
            buf.iter_mut().for_each(|x| *x /= world);
        }
        Ok(())
    }

    fn with<R>(&self, f: impl FnOnce(&SimpleCommunicator) -> R) -> R {
        let w = self.world.lock().unwrap_or_else(|e| e.into_inner());
        f(&w)
    }
}

fn counts(lens: &[usize]) -> Result<(Vec<Count>, Vec<Count>)> {
    let mut displs = Vec::with_capacity(lens.len());
    let mut at: usize = 0;
    for &l in lens {
        displs.push(Count::try_from(at).map_err(|_| too_big(at))?);
        at += l;
    }
    let counts = lens
        .iter()
        .map(|&l| Count::try_from(l).map_err(|_| too_big(l)))
        .collect::<Result<Vec<_>>>()?;
    Count::try_from(at).map_err(|_| too_big(at))?;
    Ok((counts, displs))
}

fn too_big(n: usize) -> CoreError {
    CoreError::invalid(
        "MPI message",
        n,
        "at most 2^31 - 1 elements (MPI's count is a C int)",
    )
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.size
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn local_size(&self) -> usize {
        self.local_size
    }
    fn backend(&self) -> &'static str {
        "mpi"
    }

    fn all_reduce_f32(&self, buf: &mut [f32], op: ReduceOp) -> Result<()> {
        self.all_reduce(buf, op, self.size as f32)
    }

    fn all_reduce_f64(&self, buf: &mut [f64], op: ReduceOp) -> Result<()> {
        self.all_reduce(buf, op, self.size as f64)
    }

    fn reduce_scatter_f32(&self, send: &[f32]) -> Result<Vec<f32>> {
        if !send.len().is_multiple_of(self.size) {
            return Err(CoreError::shape(
                "reduce_scatter",
                &[&[send.len()]],
                format!("not {} equal blocks", self.size),
            ));
        }
        let block = send.len() / self.size;
        Count::try_from(send.len()).map_err(|_| too_big(send.len()))?;
        let mut out = vec![0.0f32; block];
        self.with(|w| w.reduce_scatter_block_into(send, &mut out[..], SystemOperation::sum()));
        Ok(out)
    }

    fn all_gather_f32(&self, send: &[f32]) -> Result<Vec<f32>> {
        let total = send.len() * self.size;
        Count::try_from(total).map_err(|_| too_big(total))?;
        let mut out = vec![0.0f32; total];
        self.with(|w| w.all_gather_into(send, &mut out[..]));
        Ok(out)
    }

    fn reduce_f32(&self, send: &[f32], recv: Option<&mut [f32]>, root: usize) -> Result<()> {
        check_root(root, self.size)?;
        super::check_recv(send, recv.as_deref(), self.rank == root)?;
        Count::try_from(send.len()).map_err(|_| too_big(send.len()))?;
        let at = root as i32;
        match recv {
            Some(r) => self.with(|w| {
                w.process_at_rank(at)
                    .reduce_into_root(send, r, SystemOperation::sum())
            }),
            None => self.with(|w| {
                w.process_at_rank(at)
                    .reduce_into(send, SystemOperation::sum())
            }),
        }
        Ok(())
    }

    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        check_root(root, self.size)?;
        Count::try_from(buf.len()).map_err(|_| too_big(buf.len()))?;
        self.with(|w| w.process_at_rank(root as i32).broadcast_into(buf));
        Ok(())
    }

    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        check_root(root, self.size)?;
        let mut len = [buf.len() as u64];
        self.with(|w| w.process_at_rank(root as i32).broadcast_into(&mut len[..]));
        let n = len[0] as usize;
        Count::try_from(n).map_err(|_| too_big(n))?;
        buf.resize(n, 0);
        self.with(|w| w.process_at_rank(root as i32).broadcast_into(&mut buf[..]));
        Ok(())
    }

    fn gather_bytes(&self, send: &[u8], root: usize) -> Result<Option<Vec<Vec<u8>>>> {
        check_root(root, self.size)?;
        Count::try_from(send.len()).map_err(|_| too_big(send.len()))?;
        let mut lens = vec![0u64; self.size];
        self.with(|w| w.all_gather_into(&(send.len() as u64), &mut lens[..]));
        let lens: Vec<usize> = lens.iter().map(|&l| l as usize).collect();
        if self.rank != root {
            self.with(|w| w.process_at_rank(root as i32).gather_varcount_into(send));
            return Ok(None);
        }
        let (counts, displs) = counts(&lens)?;
        let mut all = vec![0u8; lens.iter().sum()];
        {
            let mut part = PartitionMut::new(&mut all[..], counts, &displs[..]);
            self.with(|w| {
                w.process_at_rank(root as i32)
                    .gather_varcount_into_root(send, &mut part)
            });
        }
        let mut out = Vec::with_capacity(self.size);
        let mut at = 0;
        for l in lens {
            out.push(all[at..at + l].to_vec());
            at += l;
        }
        Ok(Some(out))
    }

    fn barrier(&self) -> Result<()> {
        self.with(|w| w.barrier());
        Ok(())
    }

    fn abort(&self, code: i32) -> ! {
        // Not under the mutex: another thread may hold it inside a collective that will never
        // complete (the reason to abort).
        SimpleCommunicator::world().abort(code)
    }
}
