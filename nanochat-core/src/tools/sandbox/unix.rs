//! The Unix runner: the run's secrets and the report pipe, the child's set-up before exec
//! (namespaces, read-only mounts, rlimits), output capture, the timeout, and the verdict.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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

/// Bytes of each of the run's secrets (256 bits from the OS), sent hex-encoded.
const SECRET_BYTES: usize = 32;
/// Bytes of the report pipe kept: more than a report is no report.
const MAX_REPORT_BYTES: usize = 1024;

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
        CoreError::invalid(
            "sandbox temp dir",
            root.display(),
            "a path without NUL bytes",
        )
    })?;
    let (status_read, status_write) = cloexec_pipe()?;
    let status_fd = status_write.as_raw_fd();
    // The secrets go into a pipe whose write end is closed before the child starts: the
    // prelude reads it to its end (and closes it) before the program runs.
    let secrets = Secrets {
        passed: fresh_secret()?,
        failed: fresh_secret()?,
    };
    let (secret_read, secret_write) = cloexec_pipe()?;
    File::from(secret_write)
        .write_all(&[&secrets.passed[..], &secrets.failed[..]].concat())
        .map_err(|e| io_err(&root, "sending the run's secrets", e))?;
    let (report_read, report_write) = cloexec_pipe()?;
    let (secret_fd, report_fd) = (secret_read.as_raw_fd(), report_write.as_raw_fd());
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
        .arg(secret_fd.to_string())
        .arg(report_fd.to_string())
        .current_dir(&root)
        .env_clear()
        .env("HOME", &root)
        .env("TMPDIR", &root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = crate::paths::env_var("PATH") {
        cmd.env("PATH", path);
    }
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: it makes raw system calls (setsid, unshare, mount, setrlimit, fcntl,
    // write) on values prepared before the fork, and allocates nothing (`last_os_error` does
    // not).
    unsafe {
        cmd.pre_exec(move || child_setup(&root_c, status_fd, [secret_fd, report_fd], rl));
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| io_err(&python, "starting python3 (in its sandbox)", e))?;
    drop(status_write);
    drop(secret_read);
    drop(report_write);
    let report = read_capped(File::from(report_read), MAX_REPORT_BYTES);
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
    let report = secrets.read_report(&collect_bytes(report));
    let status = verdict(exit, timed_out, report);
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

/// What the prelude reported on the report pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Report {
    /// The pass secret: the program's code returned.
    Passed,
    /// The failure secret: an uncaught exception.
    Failed,
    /// Nothing, or anything else (the program wrote to the pipe, or the reader gave up).
    None,
}

/// A run's two secrets, hex-encoded, of the same length (the prelude splits them in halves).
struct Secrets {
    passed: Vec<u8>,
    failed: Vec<u8>,
}

impl Secrets {
    /// The report in what the reader got (`None`: it gave up; cut: more than a report): exactly
    /// one of the secrets, nothing before or after it.
    fn read_report(&self, got: &Option<(Vec<u8>, bool)>) -> Report {
        match got {
            Some((b, false)) if *b == self.passed => Report::Passed,
            Some((b, false)) if *b == self.failed => Report::Failed,
            _ => Report::None,
        }
    }
}

/// How the run ended: a pass needs the prelude's report and exit status 0; the status alone
/// never makes one.
fn verdict(exit: std::process::ExitStatus, timed_out: bool, report: Report) -> Outcome {
    if timed_out && exit.signal() == Some(libc::SIGKILL) {
        return Outcome::TimedOut;
    }
    match (exit.code(), report) {
        (Some(0), Report::Passed) => Outcome::Passed,
        (Some(code), Report::Failed) => Outcome::Failed { exit_code: code },
        (Some(code), _) => Outcome::LeftEarly { exit_code: code },
        (None, _) => Outcome::Killed {
            signal: exit.signal().unwrap_or(0),
        },
    }
}

/// A fresh secret: [`SECRET_BYTES`] from the OS's random source, hex-encoded.
fn fresh_secret() -> Result<Vec<u8>> {
    let urandom = std::path::Path::new("/dev/urandom");
    let mut raw = [0u8; SECRET_BYTES];
    File::open(urandom)
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| io_err(urandom, "reading the run's secret", e))?;
    Ok(raw
        .iter()
        .flat_map(|b| format!("{b:02x}").into_bytes())
        .collect())
}

/// A close-on-exec pipe (read end, write end), both fds above stdin/stdout/stderr (which the
/// child's own are dup'ed onto): the isolation report, the secret, the prelude's report.
fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd)> {
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
            return Err(CoreError::Os {
                op: "sandbox: creating a pipe",
                error: io::Error::last_os_error(),
            });
        }
        let (read, write) = (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]));
        Ok((above_stdio(read)?, above_stdio(write)?))
    }
}

/// `fd`, or a close-on-exec duplicate numbered 3 or more when it is 0, 1 or 2 (possible when
/// this process was started with one of those closed).
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) returns a new fd, owned exactly once, or -1.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(CoreError::Os {
            op: "sandbox: duplicating a pipe",
            error: io::Error::last_os_error(),
        });
    }
    // SAFETY: `dup` is a fresh, valid fd.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
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
    match collect_bytes(rx) {
        Some((bytes, cut)) => (String::from_utf8_lossy(&bytes).into_owned(), cut),
        None => (String::new(), true),
    }
}

/// A reader's bytes and whether they were cut; `None` when a process outside the group holds
/// the pipe past [`READER_GRACE`] (the thread ends when that process does).
fn collect_bytes(rx: mpsc::Receiver<(Vec<u8>, bool)>) -> Option<(Vec<u8>, bool)> {
    rx.recv_timeout(READER_GRACE).ok()
}

#[derive(Clone, Copy)]
struct ChildLimits {
    memory: u64,
    cpu: u64,
    file: u64,
    processes: u64,
}

/// In the child, between fork and exec: own session, the prelude's fds (`inherit`) kept open
/// across exec, namespaces (best effort), rlimits, and the report of what it got on
/// `status_fd`. Only async-signal-safe calls.
fn child_setup(
    root: &CString,
    status_fd: libc::c_int,
    inherit: [libc::c_int; 2],
    rl: ChildLimits,
) -> io::Result<()> {
    // SAFETY: raw system calls on valid pointers (`root`, locals) in the single-threaded child.
    unsafe {
        if libc::setsid() == -1 {
            return Err(io::Error::last_os_error());
        }
        for fd in inherit {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
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
unsafe fn mount_setattr(path: &std::ffi::CStr, flags: libc::c_int, set: u64, clear: u64) -> bool {
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

/// mount(2) of `source` (null: none) onto `target` with `flags`, no file system type or data.
/// True on success.
#[cfg(target_os = "linux")]
unsafe fn mount(
    source: *const libc::c_char,
    target: &std::ffi::CStr,
    flags: libc::c_ulong,
) -> bool {
    libc::mount(
        source,
        target.as_ptr(),
        std::ptr::null(),
        flags,
        std::ptr::null(),
    ) == 0
}

/// In the new mount namespace: the temp dir bound onto itself, every mount read-only
/// (recursively, mount_setattr: Linux 5.12+), then the temp dir writable again. False (and
/// nothing changed that matters) when the kernel refuses a step before the read-only one.
#[cfg(target_os = "linux")]
unsafe fn read_only_mounts(root: &CString) -> io::Result<bool> {
    let slash = c"/";
    // Nothing done here propagates to the parent namespace.
    if !mount(std::ptr::null(), slash, libc::MS_REC | libc::MS_PRIVATE)
        || !mount(root.as_ptr(), root, libc::MS_BIND | libc::MS_REC)
        || !mount_setattr(slash, libc::AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0)
    {
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
