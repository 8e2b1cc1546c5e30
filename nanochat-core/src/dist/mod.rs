//! Training and evaluation across processes: a [`Communicator`] (rank, world size, local rank and
//! the collectives a step needs) with two backends, one process ([`SingleProcess`], the default)
//! and MPI over host memory ([`mpi`], the cargo feature `mpi`: rsmpi over the system's OpenMPI,
//! launched by `mpirun` or Slurm's `srun`). The process-wide communicator is set once by
//! [`init`] (the `nanochat` binary does it first thing) and read by [`world`].
//!
//! What the training loop builds on it: [`Ownership`] (which rank updates which parameter: the
//! ZeRO-2 split of nanochat HEAD's `DistMuonAdamW` in `nanochat/optim.py` at 92d63d4, at the
//! granularity of whole parameters as v1's `DistMuon` in `nanochat/muon.py` at 16788ee),
//! [`sync`] (gradients reduce-scattered to their owners, parameters all-gathered from them,
//! optimizer state gathered for rank 0's checkpoint), and [`lock`] (one writer per checkpoint
//! folder).
//!
//! On CUDA devices the step's collectives run on the GPU through NCCL (`dist::nccl`, CUDA builds),
//! the host communicator carrying only NCCL's id, scalars and checkpoints.
//!
//! A binary built without MPI that finds itself started as one of several ranks refuses to run
//! ([`init`]): N independent copies would train the same model N times into one folder.

pub mod lock;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "cuda")]
pub mod nccl;
mod ownership;
pub mod sync;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

pub use lock::FolderLock;
pub use ownership::{Ownership, ShardPolicy};

use crate::{CoreError, Result};

/// How [`Communicator::all_reduce_f32`] combines the ranks' buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// The element-wise sum over ranks.
    Sum,
    /// The sum divided by the world size.
    Mean,
}

/// A group of processes training one model: who this process is, and the collectives the
/// training loop needs. Every collective must be called by every rank, in the same order, with
/// buffers of the same length; a rank that fails or dies ends the job (MPI's default error
/// handler aborts it, and `mpirun` kills the other ranks).
///
/// Buffers live in host memory (f32/f64). All methods are blocking.
pub trait Communicator: Send + Sync + std::fmt::Debug {
    /// This process's rank, in `0..world_size`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn world_size(&self) -> usize;
    /// This process's rank among the processes of its machine (it picks the GPU).
    fn local_rank(&self) -> usize;
    /// The number of processes on this machine.
    fn local_size(&self) -> usize;
    /// The backend's name (`single`, `mpi`), recorded with a run.
    fn backend(&self) -> &'static str;
    /// In place: every rank ends with the sum (or mean) of everyone's `buf`.
    fn all_reduce_f32(&self, buf: &mut [f32], op: ReduceOp) -> Result<()>;
    /// As [`Communicator::all_reduce_f32`], in f64 (loss and bits-per-byte sums).
    fn all_reduce_f64(&self, buf: &mut [f64], op: ReduceOp) -> Result<()>;
    /// `send` is `world_size` equal blocks; rank r receives the sum over ranks of block r.
    /// Errors: [`CoreError::Shape`] when `send` does not split into `world_size` blocks.
    fn reduce_scatter_f32(&self, send: &[f32]) -> Result<Vec<f32>>;
    /// Every rank's `send` (all of one length), concatenated in rank order.
    fn all_gather_f32(&self, send: &[f32]) -> Result<Vec<f32>>;
    /// The sum over ranks of `send` (all of one length) into rank `root`'s `recv` (`Some` there,
    /// of `send`'s length; `None` elsewhere). Errors: [`CoreError::InvalidArgument`] for a
    /// root outside the world or a `recv` given on the wrong rank or of the wrong length.
    fn reduce_f32(&self, send: &[f32], recv: Option<&mut [f32]>, root: usize) -> Result<()>;
    /// In place: every rank's `buf` becomes rank `root`'s.
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()>;
    /// Rank `root`'s bytes, on every rank (the length travels too).
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()>;
    /// Every rank's bytes (any lengths) at rank `root`, in rank order; `None` on other ranks.
    fn gather_bytes(&self, send: &[u8], root: usize) -> Result<Option<Vec<Vec<u8>>>>;
    /// Returns when every rank has called it.
    fn barrier(&self) -> Result<()>;
    /// Ends every rank of the job now with `code` (after an error on this rank, so that no peer
    /// waits in a collective). One process: exits.
    fn abort(&self, code: i32) -> !;
}

/// The one-process communicator: rank 0 of 1; collectives are copies.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn local_size(&self) -> usize {
        1
    }
    fn backend(&self) -> &'static str {
        "single"
    }
    fn all_reduce_f32(&self, _buf: &mut [f32], _op: ReduceOp) -> Result<()> {
        Ok(())
    }
    fn all_reduce_f64(&self, _buf: &mut [f64], _op: ReduceOp) -> Result<()> {
        Ok(())
    }
    fn reduce_scatter_f32(&self, send: &[f32]) -> Result<Vec<f32>> {
        Ok(send.to_vec())
    }
    fn all_gather_f32(&self, send: &[f32]) -> Result<Vec<f32>> {
        Ok(send.to_vec())
    }
    fn reduce_f32(&self, send: &[f32], recv: Option<&mut [f32]>, root: usize) -> Result<()> {
        check_root(root, 1)?;
        check_recv(send, recv.as_deref(), root == 0)?;
        if let Some(r) = recv {
            r.copy_from_slice(send);
        }
        Ok(())
    }
    fn broadcast_f32(&self, _buf: &mut [f32], root: usize) -> Result<()> {
        check_root(root, 1)
    }
    fn broadcast_bytes(&self, _buf: &mut Vec<u8>, root: usize) -> Result<()> {
        check_root(root, 1)
    }
    fn gather_bytes(&self, send: &[u8], root: usize) -> Result<Option<Vec<Vec<u8>>>> {
        check_root(root, 1)?;
        Ok(Some(vec![send.to_vec()]))
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// [`CoreError::InvalidArgument`] unless `root < world`.
pub(crate) fn check_root(root: usize, world: usize) -> Result<()> {
    if root >= world {
        return Err(CoreError::invalid(
            "root rank",
            root,
            format!("a rank below the world size {world}"),
        ));
    }
    Ok(())
}

/// [`CoreError::InvalidArgument`] unless `recv` is given exactly at the root, of `send`'s
/// length.
pub(crate) fn check_recv(send: &[f32], recv: Option<&[f32]>, at_root: bool) -> Result<()> {
    match (recv, at_root) {
        (Some(r), true) if r.len() == send.len() => Ok(()),
        (None, false) => Ok(()),
        (r, _) => Err(CoreError::invalid(
            "reduce receive buffer",
            r.map_or("none".to_string(), |r| format!("{} values", r.len())),
            format!("{} values at the root only", send.len()),
        )),
    }
}

/// A shared handle on a communicator (cheap to clone).
#[derive(Clone, Debug)]
pub struct Dist(Arc<dyn Communicator>);

impl Dist {
    /// Wraps a communicator.
    pub fn new(comm: Arc<dyn Communicator>) -> Dist {
        Dist(comm)
    }

    /// The one-process communicator.
    pub fn single() -> Dist {
        Dist(Arc::new(SingleProcess))
    }

    /// Whether this is rank 0 (the rank that writes checkpoints, metrics and reports).
    pub fn is_main(&self) -> bool {
        self.0.rank() == 0
    }

    /// Whether more than one process takes part.
    pub fn is_distributed(&self) -> bool {
        self.0.world_size() > 1
    }
}

impl std::ops::Deref for Dist {
    type Target = dyn Communicator;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

static WORLD: OnceLock<Dist> = OnceLock::new();

/// The process-wide communicator set by [`init`]; one process when `init` was not called.
pub fn world() -> Dist {
    WORLD.get().cloned().unwrap_or_else(Dist::single)
}

/// The launchers' environment variables that give the number of ranks a process was started
/// among, in the order they are read: OpenMPI's `OMPI_COMM_WORLD_SIZE`, PMI's `PMI_SIZE`
/// (MPICH, Slurm's PMI-2), Slurm's `SLURM_STEP_NUM_TASKS` when PMIx started the step (`srun
/// --mpi=pmix` sets `PMIX_RANK`), and torchrun's `WORLD_SIZE`.
pub const LAUNCH_VARS: [&str; 4] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "SLURM_STEP_NUM_TASKS",
    "WORLD_SIZE",
];

/// The world size a launcher announced in `env` (the first of [`LAUNCH_VARS`] set to a number,
/// and which variable), or `None` when none is. Slurm's count is read only under PMIx (an
/// `sbatch` script's own process is not one of the step's ranks).
pub fn launched_world_size(env: &dyn Fn(&str) -> Option<String>) -> Option<(usize, &'static str)> {
    LAUNCH_VARS.iter().find_map(|&var| {
        if var == "SLURM_STEP_NUM_TASKS" && env("PMIX_RANK").is_none() {
            return None;
        }
        env(var)
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map(|n| (n, var))
    })
}

/// The launch line that runs `N` ranks of this command with MPI.
pub fn launch_hint(n: usize) -> String {
    format!(
        "build with MPI (`cargo build --release -p nanochat-bin --features mpi`, or `./x` which enables it) and launch with `mpirun -np {n} nanochat <command> ...` (several machines: `mpirun -H a:8,b:8 -np 16 ...`; Slurm: `srun --mpi=pmix -n {n} nanochat ...`)"
    )
}

/// Held by `main` while the process runs: [`DistGuard::finish`] ends MPI cleanly after
/// success; dropped without it (an error on this rank), it aborts the whole job so that no
/// peer hangs in a collective.
pub struct DistGuard {
    #[cfg(feature = "mpi")]
    universe: Option<::mpi::environment::Universe>,
    finished: bool,
}

impl DistGuard {
    /// Ends the run normally: every rank must call it (MPI's finalize is collective).
    pub fn finish(mut self) {
        self.finished = true;
        #[cfg(feature = "mpi")]
        drop(self.universe.take());
    }
}

impl Drop for DistGuard {
    fn drop(&mut self) {
        if !self.finished && world().is_distributed() {
            world().abort(1);
        }
    }
}

/// How this process was started, as [`launch`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launch {
    /// One process on its own.
    Single,
    /// One rank of an MPI job (`mpirun`, `srun`) of this many ranks.
    Mpi(usize),
}

/// Decides how to run from the launchers' variables in `env` ([`launched_world_size`]) and
/// whether this build has MPI (`with_mpi`): MPI when an MPI launcher started the process (any
/// number of ranks, `mpirun -np 1` included) and the build has it; one process when no launcher
/// did, or announced a world of 1.
///
/// Errors: [`CoreError::Unsupported`] with the launch line to use when several ranks were
/// announced and this build cannot join them (no MPI), and for torchrun's `WORLD_SIZE` above 1
/// (it gives no MPI world).
pub fn launch(env: &dyn Fn(&str) -> Option<String>, with_mpi: bool) -> Result<Launch> {
    match launched_world_size(env) {
        Some((n, "WORLD_SIZE")) if n > 1 => Err(CoreError::Unsupported {
            op: "launch",
            why: format!(
                "started by torchrun or another launcher that sets WORLD_SIZE={n}, which nanochat-rs does not join; {}",
                launch_hint(n)
            ),
        }),
        Some((n, var)) if var != "WORLD_SIZE" && with_mpi => Ok(Launch::Mpi(n)),
        Some((n, var)) if n > 1 => Err(CoreError::Unsupported {
            op: "launch",
            why: format!(
                "this process is one of {n} ranks ({var}={n}) but this nanochat was built without MPI: the {n} copies would each train alone and write into one folder; {}",
                launch_hint(n)
            ),
        }),
        _ => Ok(Launch::Single),
    }
}

/// Sets the process-wide communicator from how the process was launched ([`launch`]), once,
/// before any device is created. Under several local ranks on the CPU, this process's CPU
/// affinity is narrowed to its share of the machine's cores ([`split_cpus`]), so that ranks
/// do not oversubscribe.
///
/// Errors: [`launch`]'s refusals; MPI's initialisation failing.
pub fn init() -> Result<DistGuard> {
    let env = |k: &str| std::env::var(k).ok();
    match launch(&env, cfg!(feature = "mpi"))? {
        Launch::Single => {
            let _ = WORLD.set(Dist::single());
            Ok(DistGuard {
                #[cfg(feature = "mpi")]
                universe: None,
                finished: false,
            })
        }
        #[cfg(feature = "mpi")]
        Launch::Mpi(_) => {
            let (universe, comm) = mpi::MpiComm::init()?;
            let dist = Dist::new(Arc::new(comm));
            let _ = WORLD.set(dist.clone());
            split_cpus(dist.local_rank(), dist.local_size());
            Ok(DistGuard {
                universe: Some(universe),
                finished: false,
            })
        }
        #[cfg(not(feature = "mpi"))]
        Launch::Mpi(_) => unreachable!("launch() gives Mpi only to builds with MPI"),
    }
}

/// Narrows this process's CPU affinity to its `1 / local_size` share of the CPUs it may run
/// on (local rank r takes the r-th contiguous share), when it may run on all of the machine's
/// CPUs: two ranks on two cores then get one core each, and the CPU runtime (which sizes its
/// thread pool by the affinity) one thread each. A launcher that already bound the ranks
/// (`mpirun`'s default `--bind-to core`) leaves nothing to do. Linux only; elsewhere a no-op.
pub fn split_cpus(local_rank: usize, local_size: usize) {
    #[cfg(target_os = "linux")]
    {
        if local_size <= 1 {
            return;
        }
        // SAFETY: `set` is a plain bit mask that sched_getaffinity fills for this process
        // (pid 0); its size is passed.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `c` is below CPU_SETSIZE, the size of the mask.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect();
        // SAFETY: sysconf has no preconditions.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        if online <= 0 || cpus.len() != online as usize || cpus.len() < local_size {
            return;
        }
        let per = cpus.len() / local_size;
        let mine = &cpus[local_rank * per..(local_rank + 1) * per];
        // SAFETY: a zeroed mask is valid; CPU_SET writes bits below CPU_SETSIZE.
        let mut new: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in mine {
            // SAFETY: `c` came from the mask, so it is below CPU_SETSIZE.
            unsafe { libc::CPU_SET(c, &mut new) };
        }
        // SAFETY: `new` is a valid mask of the size passed.
        if unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&new), &new) } == 0 {
            tracing::debug!(local_rank, local_size, ?mine, "CPU affinity narrowed");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (local_rank, local_size);
}

/// On every rank but 0, sends stdout and stderr to `/dev/null` (only rank 0 prints the
/// summary, the progress and the logs, as only it writes files) and returns the original
/// stderr, where this rank's own error or panic is still written. `None` on rank 0 (and on
/// platforms without file descriptors).
pub fn silence_other_ranks() -> Option<std::fs::File> {
    let dist = world();
    if dist.is_main() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::fd::{AsRawFd, FromRawFd};
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .ok()?;
        // SAFETY: dup of this process's stderr; the new descriptor is owned by the File below.
        let saved = unsafe { libc::dup(2) };
        if saved < 0 {
            return None;
        }
        // SAFETY: dup2 onto the standard descriptors, which stay open (now /dev/null).
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
        // SAFETY: `saved` is a fresh descriptor nothing else owns.
        let file = unsafe { std::fs::File::from_raw_fd(saved) };
        let rank = dist.rank();
        let for_panics = file.try_clone().ok();
        if let Some(f) = for_panics {
            let f = std::sync::Mutex::new(f);
            std::panic::set_hook(Box::new(move |info| {
                use std::io::Write;
                if let Ok(mut f) = f.lock() {
                    let _ = writeln!(f, "rank {rank}: {info}");
                }
            }));
        }
        Some(file)
    }
    #[cfg(not(unix))]
    None
}

/// This process's rank as a launcher announced it in `env` (`OMPI_COMM_WORLD_RANK`,
/// `PMI_RANK`, `PMIX_RANK`), before MPI is joined: who prints a command-line error that every
/// rank finds (rank 0 alone). `None` when no launcher did.
pub fn launched_rank(env: &dyn Fn(&str) -> Option<String>) -> Option<usize> {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"]
        .iter()
        .find_map(|v| env(v).and_then(|s| s.trim().parse().ok()))
}

/// Reports this rank's error `message` once for the job, then returns (the caller drops its
/// [`DistGuard`], which ends every rank). One process: `error: <message>` on stderr. Rank 0:
/// the same line, written whole and given a moment to reach `mpirun` before the abort. Another
/// rank (whose stderr is `rank_stderr`, see [`silence_other_ranks`]) waits 2 s first: an error
/// that every rank finds (a bad flag, a missing file) is then printed by rank 0 alone, whose
/// abort ends this rank before it prints; an error of its own is printed as `rank <r>: error:
/// <message>`.
pub fn report_error(message: &str, rank_stderr: Option<std::fs::File>) {
    use std::io::Write;
    let dist = world();
    match rank_stderr {
        Some(mut f) if dist.is_distributed() => {
            std::thread::sleep(std::time::Duration::from_secs(2));
            let line = format!("rank {}: error: {message}\n", dist.rank());
            let _ = f.write_all(line.as_bytes());
            let _ = f.flush();
        }
        _ => {
            let line = format!("error: {message}\n");
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(line.as_bytes());
            let _ = err.flush();
            if dist.is_distributed() {
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        }
    }
}
