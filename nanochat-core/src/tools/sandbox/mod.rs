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
//! **How a pass is recognised.** A run passes only when the harness itself sees the program's
//! code return, never from the exit status alone: each run gets two fresh secrets (256 bits
//! each from the OS's random source), one for a pass and one for a failure, written into a
//! pipe whose write end the harness closes before the interpreter starts; the prelude reads
//! that pipe to its end and closes it before the program runs. When the program's code returns
//! without an exception (in the process the harness started, not a forked copy), the prelude
//! writes the pass secret to a second, dedicated pipe; on an uncaught exception, the failure
//! secret (the program's code may still run after that, in the exception's `__str__`, so that
//! one must not tell anything about the other); then it exits. The harness counts
//! [`Outcome::Passed`] only when that pipe holds exactly the pass secret and the exit status is
//! 0. As the program never sees the pass secret, nothing it can do makes a pass: exiting (any
//! status, `os._exit`, `posix._exit`, `SystemExit`, `abort`, from any module, from native code
//! or from any thread), replacing the process (`exec`), forking (a forked copy of the prelude
//! does not report), printing, or writing to any inherited descriptor (the pipe then holds
//! something else, which voids the report). An exit without the prelude's report is
//! [`Outcome::LeftEarly`], told apart from a reported exception ([`Outcome::Failed`]).
//! Out of scope: the program runs in the prelude's interpreter, so deliberate inspection of the
//! harness's own memory (the prelude's frames and objects, e.g. through `sys._getframe`, `gc`
//! or `ctypes`, or the parent process's memory) can find the secret or skip the tests.
//!
//! Output is read on threads (a program printing megabytes cannot deadlock on a full pipe) and
//! kept up to `max_output_bytes` per stream; the rest is read and dropped.
//!
//! This is a guard against accidents of generated code (an infinite loop, a memory hog, a stray
//! `os.remove`, an exit before the tests), not a boundary against a determined attacker: run
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
    /// The program's code returned without an uncaught exception: the prelude reported it with
    /// the run's secret (see the module doc), and exited with status 0.
    Passed,
    /// The prelude reported an uncaught exception (the traceback is on stderr), a `SystemExit`
    /// (even `exit(0)`: as in human-eval, a program does not pass by leaving before its tests),
    /// or a syntax error.
    Failed {
        /// The process's exit status (1 when the prelude exits after its report).
        exit_code: i32,
    },
    /// The process exited (with any status, 0 included) without the prelude's report: the
    /// program left before its end (`os._exit`/`posix._exit` from any module or thread, native
    /// code, `exec` of another program), tampered with the report pipe, or the interpreter
    /// failed before the prelude ran.
    LeftEarly {
        /// The process's exit status.
        exit_code: i32,
    },
    /// Killed by a signal: `SIGXCPU`/`SIGKILL` past the CPU limit, `SIGXFSZ` past the file-size
    /// limit, `SIGSEGV`...
    Killed {
        /// The signal number (`SIGKILL` is 9).
        signal: i32,
    },
    /// Still running at the wall-clock timeout: its process group was killed.
    TimedOut,
}

impl Outcome {
    /// Whether it is [`Outcome::Passed`].
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
    /// How the run ended.
    pub status: Outcome,
    /// The first `max_output_bytes` of stdout (lossy UTF-8).
    pub stdout: String,
    /// The first `max_output_bytes` of stderr (lossy UTF-8): the traceback of a failure.
    pub stderr: String,
    /// Whether either stream was cut at `max_output_bytes`.
    pub truncated: bool,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
    /// The isolation layers this run got.
    pub isolation: Isolation,
}

/// The Python prelude every program runs under, given as `python3 -c` with the program's path as
/// `sys.argv[1]` and the secret's and the report's fds as `sys.argv[2]` and `sys.argv[3]`. It is human-eval's (and nanochat's) `reliability_guard`, then runs the program:
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
///   `SystemExit`) reports a failure, prints its traceback and exits 1; reaching the end reports
///   the pass and exits 0 (through a saved `os._exit`, so `atexit` hooks and leftover threads
///   cannot change the result).
///
/// Before all that it reads the run's two secrets (pass, then failure: halves of what the fd
/// in `sys.argv[2]` holds) and closes that fd; the report (one of them) goes to the fd in
/// `sys.argv[3]`, made non-inheritable (see the module doc).
///
/// What it does not protect against: anything reaching the same calls another way (`posix.remove`,
/// `_socket.socket`, `ctypes`, `open(path, "w")` on a file outside the temp dir). Those are for
/// the rlimits, the namespaces and the read-only mounts to stop, where the kernel allows them.
pub const PRELUDE: &str = r#"
def _nanochat_sandbox():
    import builtins, faulthandler, os, shutil, socket, subprocess, sys, traceback

    path = sys.argv[1]
    _exit, _write, _getpid = os._exit, os.write, os.getpid
    # The run's two secrets (the pass and the failure reports), from a pipe the harness closed
    # after writing them: read to its end, then closed, before the program starts.
    secret_fd, result_fd = int(sys.argv[2]), int(sys.argv[3])
    secrets = b""
    while True:
        chunk = os.read(secret_fd, 4096)
        if not chunk:
            break
        secrets += chunk
    os.close(secret_fd)
    passed, failed = secrets[:len(secrets) // 2], secrets[len(secrets) // 2:]
    del secrets
    # Not passed on to a program the process is replaced with (exec).
    os.set_inheritable(result_fd, False)
    pid = _getpid()

    def report(data):
        # Only the interpreter the harness started reports: not a child the program forked.
        if _getpid() != pid:
            return
        try:
            while data:
                data = data[_write(result_fd, data):]
        except BaseException:
            pass

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
        report(failed)
        try:
            traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        _exit(1)
    report(passed)
    _exit(0)

_nanochat_sandbox()
"#;

/// The `python3` the sandbox runs: the first on `PATH`, resolved (through shims such as pyenv's)
/// to the interpreter itself once per process. [`CoreError::Unsupported`] when there is none.
pub fn python3() -> Result<PathBuf> {
    static PYTHON: std::sync::OnceLock<std::result::Result<PathBuf, String>> =
        std::sync::OnceLock::new();
    PYTHON
        .get_or_init(find_python3)
        .clone()
        .map_err(|why| CoreError::Unsupported {
            op: "python sandbox",
            why,
        })
}

fn find_python3() -> std::result::Result<PathBuf, String> {
    let found = crate::paths::env_var("PATH").and_then(|paths| {
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
    Err(CoreError::Unsupported {
        op: "python sandbox",
        why: "it needs a Unix system (rlimits, process groups)".into(),
    })
}

/// [`CoreError::Io`] of `path`, its message saying what the sandbox was doing (the error's
/// kind kept).
fn io_err(path: &Path, what: &str, e: std::io::Error) -> CoreError {
    CoreError::io(
        path,
        std::io::Error::new(e.kind(), format!("sandbox: {what}: {e}")),
    )
}

#[cfg(unix)]
mod unix;

#[cfg(all(test, unix))]
mod tests;
