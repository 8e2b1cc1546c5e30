//! A sandboxed `python3` runner for untrusted code (HumanEval completions and their tests), as
//! human-eval's `execution.py` and nanochat's `execution.py` run them: a fresh process per
//! program, with time and memory limits, no network, in a temporary directory.
//!
//! Layers, from strongest to weakest:
//! - **A fresh temp dir** as the working directory (and `HOME`/`TMPDIR`), deleted afterwards; the
//!   environment is cleared but for `PATH`; stdin is `/dev/null`; `python3 -I -B` (isolated mode:
//!   no `PYTHON*` variables, no user site-packages, no script dir on `sys.path`; no `.pyc` writes).
//! - **Resource limits** set in the child before `exec`: address space (`memory_bytes`), CPU
//!   seconds (`SIGXCPU`, then `SIGKILL` a second later), file size ([`MAX_FILE_BYTES`]), processes
//!   and threads ([`MAX_PROCESSES`]), no core dumps.
//! - **Its own session** (`setsid`): on the wall-clock timeout the whole process group is killed
//!   (and after a normal exit, whatever the program left running in it).
//! - **Namespaces**, best effort (Linux): a new user + network + mount namespace (unprivileged on
//!   most kernels), so the program has no network interface but a down loopback, no capabilities,
//!   and every mount read-only except the temp dir. Where user namespaces are not allowed, a
//!   network namespace alone (when privileged), else none: [`SandboxOutcome::isolation`] says
//!   which layers a run got.
//! - **The Python prelude** ([`PRELUDE`]), always: human-eval's `reliability_guard`, which
//!   disables networking and the destructive `os`/`shutil`/`subprocess` functions.
//!
//! Output is read on threads (a program printing megabytes cannot deadlock on a full pipe) and
//! kept up to `max_output_bytes` per stream; the rest is read and dropped.
//!
//! This is a guard against accidents of generated code (an infinite loop, a memory hog, a stray
//! `os.remove`, an `exit()` before the tests), not a boundary against a determined attacker: run
//! evaluations of untrusted models on a machine (or container) you can afford to lose.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{CoreError, Result};

/// The largest file the program may write (`RLIMIT_FSIZE`): writing past it kills it (`SIGXFSZ`).
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// `RLIMIT_NPROC`: processes and threads. Inside a user namespace (kernel 5.15+) this counts the
/// sandbox's own processes; otherwise all of the user's, so there it may stop the program from
/// forking or starting threads at all, which evaluated code does not need. The kernel exempts
/// root (by real uid, even inside a user namespace): there the process group kill and the CPU
/// limit are what bound a fork bomb.
pub const MAX_PROCESSES: u64 = 32;

/// How a run is bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Wall-clock time, after which the process group is killed ([`Outcome::TimedOut`]).
    pub timeout: Duration,
    /// CPU time (`RLIMIT_CPU`), in seconds.
    pub cpu_seconds: u64,
    /// Address space (`RLIMIT_AS`), in bytes: an allocation past it raises `MemoryError`.
    pub memory_bytes: u64,
    /// Bytes kept of stdout and of stderr, each.
    pub max_output_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            timeout: Duration::from_secs(5),
            cpu_seconds: 5,
            memory_bytes: 512 << 20,
            max_output_bytes: 64 << 10,
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The program ran to its end without an uncaught exception (exit status 0 from the prelude).
    Passed,
    /// An uncaught exception (the traceback is on stderr), a `SystemExit` (even `exit(0)`: as in
    /// human-eval, a program does not pass by leaving before its tests), or a syntax error.
    Failed { exit_code: i32 },
    /// Killed by a signal: `SIGXCPU`/`SIGKILL` past the CPU limit, `SIGXFSZ` past the file-size
    /// limit, `SIGSEGV`...
    Killed { signal: i32 },
    /// Still running at the wall-clock timeout: its process group was killed.
    TimedOut,
}

impl Outcome {
    pub fn passed(self) -> bool {
        self == Outcome::Passed
    }
}

/// The isolation layers a run got beyond the ones always applied (temp dir, rlimits, session,
/// prelude).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Isolation {
    /// In a new user namespace (no capabilities; the owner of the namespaces below).
    pub user_namespace: bool,
    /// In a new network namespace: no interface but a loopback that is down.
    pub network_namespace: bool,
    /// Every mount read-only but the temp dir (a new mount namespace).
    pub read_only_fs: bool,
}

/// The result of [`run_python`].
#[derive(Clone, Debug)]
pub struct SandboxOutcome {
    pub status: Outcome,
    /// The first `max_output_bytes` of stdout (lossy UTF-8).
    pub stdout: String,
    /// The first `max_output_bytes` of stderr (lossy UTF-8): the traceback of a failure.
    pub stderr: String,
    /// Whether either stream was cut at `max_output_bytes`.
    pub truncated: bool,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
    pub isolation: Isolation,
}

/// The Python prelude every program runs under, given as `python3 -c` with the program's path as
/// `sys.argv[1]`. It is human-eval's (and nanochat's) `reliability_guard`, then runs the program:
///
/// - disables networking: `socket.socket` (a subclass whose constructor raises, so `ssl` and
///   `asyncio` still import), `create_connection`, `create_server`, `socketpair`, `fromfd` and the
///   name lookups;
/// - disables the destructive and escaping functions of `os` (kill, system, putenv, remove,
///   rename, chmod, chown, chdir, getcwd, fork, exec*, spawn*, setsid, _exit, ...), `shutil`
///   (rmtree, move, chown) and `subprocess.Popen`, `exit`/`quit` and `help`, and makes `ipdb`,
///   `joblib`, `resource`, `psutil` and `tkinter` unimportable; `faulthandler` off;
///   `OMP_NUM_THREADS=1`;
/// - reads the program (UTF-8), compiles it on its own (so `from __future__` works and tracebacks
///   name its file and lines) and executes it as `__main__`; any exception (including
///   `SystemExit`) prints its traceback and exits 1; reaching the end exits 0 (through a saved
///   `os._exit`, so `atexit` hooks and leftover threads cannot change the result).
///
/// What it does not protect against: anything reaching the same calls another way (`posix.remove`,
/// `_socket.socket`, `ctypes`, `open(path, "w")` on a file outside the temp dir). Those are for
/// the rlimits, the namespaces and the read-only mounts to stop, where the kernel allows them.
pub const PRELUDE: &str = r#"
def _nanochat_sandbox():
    import builtins, faulthandler, os, shutil, socket, subprocess, sys, traceback

    path = sys.argv[1]
    _exit = os._exit
    faulthandler.disable()
    os.environ["OMP_NUM_THREADS"] = "1"

    def disabled(name):
        def refuse(*args, **kwargs):
            raise PermissionError(name + " is disabled in the sandbox")
        return refuse

    class GuardedSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            raise PermissionError("network access is disabled in the sandbox")

    socket.socket = GuardedSocket
    for name in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo",
                 "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        if hasattr(socket, name):
            setattr(socket, name, disabled("socket." + name))
    for name in ("kill", "killpg", "system", "popen", "putenv", "unsetenv", "remove", "removedirs",
                 "rmdir", "unlink", "rename", "renames", "replace", "truncate", "link", "symlink",
                 "chdir", "fchdir", "getcwd", "chroot", "chmod", "fchmod", "lchmod", "chflags",
                 "lchflags", "chown", "fchown", "lchown", "setuid", "setgid", "setsid", "setpgid",
                 "fork", "forkpty", "execl", "execle", "execlp", "execlpe", "execv", "execve",
                 "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv",
                 "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "_exit"):
        if hasattr(os, name):
            setattr(os, name, disabled("os." + name))
    for name in ("rmtree", "move", "chown"):
        setattr(shutil, name, disabled("shutil." + name))
    subprocess.Popen = disabled("subprocess.Popen")
    builtins.exit = disabled("exit")
    builtins.quit = disabled("quit")
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None

    sys.argv = [path]
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
        code = compile(source, path, "exec", dont_inherit=True)
        exec(code, {"__name__": "__main__", "__file__": path, "__builtins__": builtins})
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        try:
            traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        _exit(1)
    _exit(0)

_nanochat_sandbox()
"#;

/// The `python3` the sandbox runs: the first on `PATH`, resolved (through shims such as pyenv's)
/// to the interpreter itself once per process. An error when there is none.
pub fn python3() -> Result<PathBuf> {
    static PYTHON: std::sync::OnceLock<std::result::Result<PathBuf, String>> =
        std::sync::OnceLock::new();
    PYTHON
        .get_or_init(find_python3)
        .clone()
        .map_err(CoreError::Config)
}

fn find_python3() -> std::result::Result<PathBuf, String> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("python3"))
            .find(|p| p.is_file())
    });
    let Some(shim) = found else {
        return Err(
            "python3 not found on PATH: running generated code (HumanEval) needs a python3 interpreter"
                .into(),
        );
    };
    let out = std::process::Command::new(&shim)
        .args(["-I", "-c", "import sys; print(sys.executable)"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("python3 ({}) did not start: {e}", shim.display()))?;
    if !out.status.success() {
        return Err(format!(
            "python3 ({}) failed to start: {}",
            shim.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let exe = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(if exe.is_absolute() && exe.is_file() {
        exe
    } else {
        shim
    })
}

/// Runs `program` (Python source) under [`PRELUDE`] in a fresh temp dir with `limits` (see the
/// module doc). An error only when the sandbox itself cannot run (no `python3`, no temp dir, a
/// failed spawn); whatever the program does is in the [`SandboxOutcome`].
#[cfg(unix)]
pub fn run_python(program: &str, limits: &SandboxLimits) -> Result<SandboxOutcome> {
    unix::run(program, limits)
}

/// Not available: the sandbox needs a Unix system (rlimits, sessions, signals).
#[cfg(not(unix))]
pub fn run_python(_program: &str, _limits: &SandboxLimits) -> Result<SandboxOutcome> {
    Err(CoreError::Config(
        "the python sandbox needs a Unix system (rlimits, process groups)".into(),
    ))
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> CoreError {
    CoreError::File {
        path: path.display().to_string(),
        why: format!("sandbox: {what}: {e}"),
    }
}

#[cfg(unix)]
mod unix {
    use std::ffi::CString;
    use std::fs::File;
    use std::io::{self, Read};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::{io_err, python3, Isolation, Outcome, SandboxLimits, SandboxOutcome};
    use super::{MAX_FILE_BYTES, MAX_PROCESSES, PRELUDE};
    use crate::{CoreError, Result};

    // The bits the child reports through the status pipe, before exec.
    const USER_NS: u8 = 1;
    const NET_NS: u8 = 2;
    const READ_ONLY_FS: u8 = 4;

    /// How long to wait for the output readers once the process group is gone: they end at once
    /// unless something outside the group (a process that left it) still holds the pipes.
    const READER_GRACE: Duration = Duration::from_secs(1);

    pub(super) fn run(program: &str, limits: &SandboxLimits) -> Result<SandboxOutcome> {
        let python = python3()?;
        let dir = tempfile::Builder::new()
            .prefix("nanochat-sandbox-")
            .tempdir()
            .map_err(|e| io_err(&std::env::temp_dir(), "creating a temp dir", e))?;
        let root = dir
            .path()
            .canonicalize()
            .map_err(|e| io_err(dir.path(), "resolving the temp dir", e))?;
        let script = root.join("program.py");
        std::fs::write(&script, program).map_err(|e| io_err(&script, "writing the program", e))?;

        let root_c = CString::new(root.as_os_str().as_bytes()).map_err(|_| {
            CoreError::Config(format!("sandbox: temp dir {} has a NUL", root.display()))
        })?;
        let (status_read, status_write) = status_pipe()?;
        let status_fd = {
            use std::os::fd::AsRawFd;
            status_write.as_raw_fd()
        };
        let rl = ChildLimits {
            memory: limits.memory_bytes,
            cpu: limits.cpu_seconds.max(1),
            file: MAX_FILE_BYTES,
            processes: MAX_PROCESSES,
        };

        let mut cmd = Command::new(&python);
        cmd.arg("-I")
            .arg("-B")
            .arg("-c")
            .arg(PRELUDE)
            .arg(&script)
            .current_dir(&root)
            .env_clear()
            .env("HOME", &root)
            .env("TMPDIR", &root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
        // calls are allowed: it makes raw system calls (setsid, unshare, mount, setrlimit, write)
        // on values prepared before the fork, and allocates nothing (`last_os_error` does not).
        unsafe {
            cmd.pre_exec(move || child_setup(&root_c, status_fd, rl));
        }
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| io_err(&python, "starting python3 (in its sandbox)", e))?;
        drop(status_write);
        let mut flags = [0u8; 1];
        let isolation = match File::from(status_read).read(&mut flags) {
            Ok(1) => Isolation {
                user_namespace: flags[0] & USER_NS != 0,
                network_namespace: flags[0] & NET_NS != 0,
                read_only_fs: flags[0] & READ_ONLY_FS != 0,
            },
            _ => Isolation::default(),
        };

        let pid = child.id() as libc::pid_t;
        let max = limits.max_output_bytes;
        let stdout = read_capped(child.stdout.take().expect("piped stdout"), max);
        let stderr = read_capped(child.stderr.take().expect("piped stderr"), max);
        let (exit_tx, exit_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = exit_tx.send(child.wait());
        });
        let (exit, timed_out) = match exit_rx.recv_timeout(limits.timeout) {
            Ok(exit) => (exit, false),
            Err(_) => {
                kill_group(pid);
                (
                    exit_rx
                        .recv()
                        .unwrap_or_else(|_| Err(io::Error::other("the waiting thread went away"))),
                    true,
                )
            }
        };
        let elapsed = start.elapsed();
        // Whatever the program left running in its group (it cannot fork without a bypass of the
        // prelude, but threads of a C extension might). The group id is the child's pid, which
        // the kernel does not reuse while any member of the group lives.
        kill_group(pid);
        let exit = exit.map_err(|e| io_err(&python, "waiting for python3", e))?;

        let (stdout, out_cut) = collect(stdout);
        let (stderr, err_cut) = collect(stderr);
        let status = if timed_out && exit.signal() == Some(libc::SIGKILL) {
            Outcome::TimedOut
        } else if let Some(code) = exit.code() {
            if code == 0 {
                Outcome::Passed
            } else {
                Outcome::Failed { exit_code: code }
            }
        } else {
            Outcome::Killed {
                signal: exit.signal().unwrap_or(0),
            }
        };
        drop(dir); // deleted here, and on every early return above
        Ok(SandboxOutcome {
            status,
            stdout,
            stderr,
            truncated: out_cut || err_cut,
            elapsed,
            isolation,
        })
    }

    /// A close-on-exec pipe (read end, write end) for the child's report of its isolation.
    fn status_pipe() -> Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe(2) writes two fds into the array on success; each is owned exactly once.
        unsafe {
            #[cfg(target_os = "linux")]
            let made = libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) == 0;
            #[cfg(not(target_os = "linux"))]
            let made = libc::pipe(fds.as_mut_ptr()) == 0
                && fds
                    .iter()
                    .all(|&fd| libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0);
            if !made {
                return Err(CoreError::Config(format!(
                    "sandbox: creating a pipe: {}",
                    io::Error::last_os_error()
                )));
            }
            Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
        }
    }

    /// Sends SIGKILL to the process group `pgid` (nothing when it is gone).
    fn kill_group(pgid: libc::pid_t) {
        // SAFETY: a plain system call; ESRCH (no such group) is expected and ignored.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }

    /// Reads a stream to its end on a thread, keeping the first `max` bytes.
    fn read_capped<R: Read + Send + 'static>(
        mut stream: R,
        max: usize,
    ) -> mpsc::Receiver<(Vec<u8>, bool)> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut cut = false;
            let mut buf = [0u8; 16 << 10];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = max - kept.len();
                        cut |= n > room;
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send((kept, cut));
        });
        rx
    }

    fn collect(rx: mpsc::Receiver<(Vec<u8>, bool)>) -> (String, bool) {
        match rx.recv_timeout(READER_GRACE) {
            Ok((bytes, cut)) => (String::from_utf8_lossy(&bytes).into_owned(), cut),
            // A process outside the group holds the pipe: give up on the stream (the thread
            // ends when that process does).
            Err(_) => (String::new(), true),
        }
    }

    #[derive(Clone, Copy)]
    struct ChildLimits {
        memory: u64,
        cpu: u64,
        file: u64,
        processes: u64,
    }

    /// In the child, between fork and exec: own session, namespaces (best effort), rlimits, and
    /// the report of what it got on `status_fd`. Only async-signal-safe calls.
    fn child_setup(root: &CString, status_fd: libc::c_int, rl: ChildLimits) -> io::Result<()> {
        // SAFETY: raw system calls on valid pointers (`root`, locals) in the single-threaded child.
        unsafe {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            let flags = namespaces(root)?;
            lower_limit(libc::RLIMIT_CORE as _, 0, 0)?;
            lower_limit(libc::RLIMIT_FSIZE as _, rl.file, rl.file)?;
            lower_limit(libc::RLIMIT_NPROC as _, rl.processes, rl.processes)?;
            lower_limit(libc::RLIMIT_CPU as _, rl.cpu, rl.cpu + 1)?;
            lower_limit(libc::RLIMIT_AS as _, rl.memory, rl.memory)?;
            // A failed write only loses the report (the parent then reads EOF).
            libc::write(status_fd, (&flags as *const u8).cast(), 1);
        }
        Ok(())
    }

    /// Sets a limit, never above the current hard limit (which an unprivileged process cannot
    /// raise).
    unsafe fn lower_limit(resource: LimitResource, soft: u64, hard: u64) -> io::Result<()> {
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(resource, &mut cur) != 0 {
            return Err(io::Error::last_os_error());
        }
        let cap = |v: u64| -> libc::rlim_t {
            let v = v as libc::rlim_t;
            if cur.rlim_max != libc::RLIM_INFINITY && v > cur.rlim_max {
                cur.rlim_max
            } else {
                v
            }
        };
        let new = libc::rlimit {
            rlim_cur: cap(soft),
            rlim_max: cap(hard),
        };
        if libc::setrlimit(resource, &new) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    type LimitResource = libc::__rlimit_resource_t;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    type LimitResource = libc::c_int;

    /// New user + network + mount namespaces with every mount read-only but `root`, else a new
    /// network namespace alone, else nothing; the flags of what it got. An error only in the one
    /// state not to exec in: mounts made read-only but the temp dir not writable again.
    #[cfg(target_os = "linux")]
    unsafe fn namespaces(root: &CString) -> io::Result<u8> {
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::CLONE_NEWNS) == 0 {
            let ro = read_only_mounts(root)?;
            return Ok(USER_NS | NET_NS | if ro { READ_ONLY_FS } else { 0 });
        }
        if libc::unshare(libc::CLONE_NEWNET) == 0 {
            return Ok(NET_NS);
        }
        Ok(0)
    }

    #[cfg(not(target_os = "linux"))]
    unsafe fn namespaces(_root: &CString) -> io::Result<u8> {
        Ok(0)
    }

    /// `struct mount_attr` of mount_setattr(2).
    #[cfg(target_os = "linux")]
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }

    #[cfg(target_os = "linux")]
    const MOUNT_ATTR_RDONLY: u64 = 1;

    #[cfg(target_os = "linux")]
    unsafe fn mount_setattr(
        path: &std::ffi::CStr,
        flags: libc::c_int,
        set: u64,
        clear: u64,
    ) -> bool {
        let attr = MountAttr {
            attr_set: set,
            attr_clr: clear,
            propagation: 0,
            userns_fd: 0,
        };
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) == 0
    }

    /// In the new mount namespace: the temp dir bound onto itself, every mount read-only
    /// (recursively, mount_setattr: Linux 5.12+), then the temp dir writable again. False (and
    /// nothing changed that matters) when the kernel refuses a step before the read-only one.
    #[cfg(target_os = "linux")]
    unsafe fn read_only_mounts(root: &CString) -> io::Result<bool> {
        let slash = c"/";
        let none = std::ptr::null::<libc::c_char>();
        let no_data = std::ptr::null::<libc::c_void>();
        // Nothing done here propagates to the parent namespace.
        if libc::mount(
            none,
            slash.as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            no_data,
        ) != 0
        {
            return Ok(false);
        }
        if libc::mount(
            root.as_ptr(),
            root.as_ptr(),
            none,
            libc::MS_BIND | libc::MS_REC,
            no_data,
        ) != 0
        {
            return Ok(false);
        }
        if !mount_setattr(slash, libc::AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0) {
            return Ok(false);
        }
        if !mount_setattr(root, 0, 0, MOUNT_ATTR_RDONLY) {
            return Err(io::Error::last_os_error());
        }
        // The working directory (set before this hook runs) is still the one under the bind
        // mount, read-only now: enter the writable one.
        if libc::chdir(root.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(true)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn limits(timeout_s: f64) -> SandboxLimits {
        SandboxLimits {
            timeout: Duration::from_secs_f64(timeout_s),
            ..SandboxLimits::default()
        }
    }

    #[test]
    fn a_good_program_passes_and_prints() {
        let out = run_python("print('hello', 6 * 7)\n", &limits(5.0)).unwrap();
        assert_eq!(out.status, Outcome::Passed, "{out:?}");
        assert_eq!(out.stdout, "hello 42\n");
        assert!(!out.truncated);
        eprintln!("isolation on this machine: {:?}", out.isolation);
    }

    #[test]
    fn an_exception_fails_with_its_traceback() {
        let out = run_python("def f():\n    assert 1 == 2, 'nope'\nf()\n", &limits(5.0)).unwrap();
        assert_eq!(out.status, Outcome::Failed { exit_code: 1 }, "{out:?}");
        assert!(
            out.stderr.contains("AssertionError: nope"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("program.py\", line 2"),
            "{}",
            out.stderr
        );
        let out = run_python("def f(:\n", &limits(5.0)).unwrap();
        assert_eq!(out.status, Outcome::Failed { exit_code: 1 });
        assert!(out.stderr.contains("SyntaxError"), "{}", out.stderr);
    }

    #[test]
    fn leaving_early_does_not_pass() {
        for exit in [
            "exit(0)",
            "quit()",
            "import sys; sys.exit(0)",
            "import os; os._exit(0)",
            "raise SystemExit",
        ] {
            let out = run_python(&format!("{exit}\nassert False\n"), &limits(5.0)).unwrap();
            assert!(!out.status.passed(), "{exit}: {out:?}");
        }
    }

    #[test]
    fn future_imports_still_work() {
        let out = run_python(
            "from __future__ import annotations\ndef f(x: Undefined) -> int:\n    return 1\nassert f(0) == 1\n",
            &limits(5.0),
        )
        .unwrap();
        assert_eq!(out.status, Outcome::Passed, "{out:?}");
    }

    #[test]
    fn an_infinite_loop_times_out() {
        let t = std::time::Instant::now();
        let out = run_python("while True:\n    pass\n", &limits(1.0)).unwrap();
        assert_eq!(out.status, Outcome::TimedOut, "{out:?}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // Sleeping uses no CPU, so only the wall clock stops it.
        let out = run_python("import time\ntime.sleep(60)\n", &limits(0.5)).unwrap();
        assert_eq!(out.status, Outcome::TimedOut, "{out:?}");
    }

    #[test]
    fn the_cpu_limit_kills() {
        let lim = SandboxLimits {
            timeout: Duration::from_secs(10),
            cpu_seconds: 1,
            ..SandboxLimits::default()
        };
        let out = run_python("while True:\n    pass\n", &lim).unwrap();
        assert!(
            matches!(out.status, Outcome::Killed { signal } if signal == libc::SIGXCPU || signal == libc::SIGKILL),
            "{out:?}"
        );
        assert!(out.elapsed < Duration::from_secs(4), "{:?}", out.elapsed);
    }

    #[test]
    fn a_memory_hog_fails() {
        let out = run_python("x = bytearray(2**32)\nprint(len(x))\n", &limits(5.0)).unwrap();
        assert_eq!(out.status, Outcome::Failed { exit_code: 1 }, "{out:?}");
        assert!(out.stderr.contains("MemoryError"), "{}", out.stderr);
        assert!(out.stdout.is_empty());
    }

    #[test]
    fn a_flood_of_output_is_truncated_not_deadlocked() {
        let lim = SandboxLimits {
            timeout: Duration::from_secs(10),
            ..SandboxLimits::default()
        };
        let out = run_python(
            "import sys\nfor _ in range(1000):\n    sys.stdout.write('x' * 10000)\n    sys.stderr.write('y' * 100)\nprint('done')\n",
            &lim,
        )
        .unwrap();
        assert_eq!(out.status, Outcome::Passed, "{:?}", out.status);
        assert!(out.truncated);
        assert_eq!(out.stdout.len(), lim.max_output_bytes);
        assert!(out.stdout.bytes().all(|b| b == b'x'));
        assert_eq!(out.stderr.len(), lim.max_output_bytes);
        assert!(out.elapsed < Duration::from_secs(5), "{:?}", out.elapsed);
    }

    #[test]
    fn the_network_is_unreachable() {
        for program in [
            "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\n",
            "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('1.1.1.1', 80))\n",
        ] {
            let out = run_python(program, &limits(5.0)).unwrap();
            assert_eq!(out.status, Outcome::Failed { exit_code: 1 }, "{out:?}");
            assert!(
                out.stderr.contains("disabled in the sandbox"),
                "{}",
                out.stderr
            );
        }
        // Around the prelude: only the network namespace stops it.
        let out = run_python(
            "import _socket\ns = _socket.socket()\ns.settimeout(1)\ns.connect(('1.1.1.1', 80))\n",
            &limits(5.0),
        )
        .unwrap();
        if out.isolation.network_namespace {
            assert_eq!(out.status, Outcome::Failed { exit_code: 1 }, "{out:?}");
            assert!(out.stderr.contains("OSError"), "{}", out.stderr);
        } else {
            eprintln!("no network namespace here: a raw _socket is not stopped ({out:?})");
        }
    }

    #[test]
    fn files_outside_the_temp_dir_survive() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim.txt");
        std::fs::write(&victim, "keep me").unwrap();
        let p = victim.display().to_string();
        for program in [
            format!("import os\nos.remove({p:?})\n"),
            format!("import os\nos.unlink({p:?})\n"),
            format!(
                "import shutil\nshutil.rmtree({:?})\n",
                outside.path().display().to_string()
            ),
        ] {
            let out = run_python(&program, &limits(5.0)).unwrap();
            assert_eq!(out.status, Outcome::Failed { exit_code: 1 }, "{out:?}");
            assert!(
                out.stderr.contains("disabled in the sandbox"),
                "{}",
                out.stderr
            );
            assert!(victim.exists());
        }
        // Around the prelude: only the read-only mounts stop these.
        for program in [
            format!("import posix\nposix.remove({p:?})\n"),
            format!("open({p:?}, 'w').write('gone')\n"),
        ] {
            let out = run_python(&program, &limits(5.0)).unwrap();
            if out.isolation.read_only_fs {
                assert_eq!(out.status, Outcome::Failed { exit_code: 1 }, "{out:?}");
                assert!(
                    out.stderr.contains("Read-only file system"),
                    "{}",
                    out.stderr
                );
                assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
            } else {
                eprintln!("no read-only mounts here: {program:?} is not stopped");
                std::fs::write(&victim, "keep me").unwrap();
            }
        }
    }

    #[test]
    fn the_temp_dir_is_writable_and_deleted_afterwards() {
        let out = run_python(
            "import os\nopen('scratch.txt', 'w').write('x' * 100)\nassert open('scratch.txt').read() == 'x' * 100\nassert os.environ['HOME'] == os.path.dirname(__file__)\nassert set(os.environ) <= {'HOME', 'TMPDIR', 'PATH', 'OMP_NUM_THREADS', 'LC_CTYPE'}, sorted(os.environ)\nprint(__file__)\n",
            &limits(5.0),
        )
        .unwrap();
        assert_eq!(out.status, Outcome::Passed, "{out:?}");
        let script = PathBuf::from(out.stdout.trim());
        assert!(script.ends_with("program.py"), "{script:?}");
        let dir = script.parent().unwrap();
        assert!(
            dir.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("nanochat-sandbox-"),
            "{dir:?}"
        );
        assert!(!dir.exists(), "{dir:?} is left behind");
    }

    #[test]
    fn forks_are_limited_and_killed_with_the_group() {
        let program = "import posix, time\nn = 0\ntry:\n    for _ in range(100):\n        pid = posix.fork()\n        if pid == 0:\n            time.sleep(30)\n            posix._exit(0)\n        print(pid, flush=True)\n        n += 1\nexcept OSError as e:\n    print('stopped', n, e)\n";
        let out = run_python(program, &limits(5.0)).unwrap();
        assert_eq!(out.status, Outcome::Passed, "{out:?}");
        assert!(out.elapsed < Duration::from_secs(3), "{:?}", out.elapsed);
        // RLIMIT_NPROC binds all but root (whose real uid the kernel exempts, namespace or
        // not); outside a user namespace it counts all of the user's processes.
        // SAFETY: getuid has no preconditions.
        if out.isolation.user_namespace && unsafe { libc::getuid() } != 0 {
            assert!(out.stdout.contains("stopped"), "{}", out.stdout);
        }
        // The sleeping children went with the process group (gone, or zombies until reaped).
        let pids: Vec<u32> = out.stdout.lines().filter_map(|l| l.parse().ok()).collect();
        assert!(!pids.is_empty());
        let alive = |pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| !r.trim_start().starts_with('Z'))
            })
        };
        let t = std::time::Instant::now();
        while pids.iter().any(alive) && t.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!pids.iter().any(alive), "left running: {pids:?}");
    }

    #[test]
    fn writing_a_huge_file_is_stopped() {
        let out = run_python(
            "with open('big', 'wb') as f:\n    for _ in range(40):\n        f.write(b'0' * (1 << 20))\n",
            &limits(5.0),
        )
        .unwrap();
        assert!(!out.status.passed(), "{out:?}");
    }
}
