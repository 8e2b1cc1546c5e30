//! Sandbox tests: limits, isolation, output capture, clean-up.

use super::*;

fn limits(timeout_s: f64) -> SandboxLimits {
    SandboxLimits {
        timeout: Duration::from_secs_f64(timeout_s),
        ..SandboxLimits::default()
    }
}

#[test]
fn a_good_program_passes_and_prints() {
    let out = passes("print('hello', 6 * 7)\n");
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
    passes("from __future__ import annotations\ndef f(x: Undefined) -> int:\n    return 1\nassert f(0) == 1\n");
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
    let out = passes("import os\nopen('scratch.txt', 'w').write('x' * 100)\nassert open('scratch.txt').read() == 'x' * 100\nassert os.environ['HOME'] == os.path.dirname(__file__)\nassert set(os.environ) <= {'HOME', 'TMPDIR', 'PATH', 'OMP_NUM_THREADS', 'LC_CTYPE'}, sorted(os.environ)\nprint(__file__)\n");
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
    let out = passes(program);
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

/// Runs `program` and asserts it did not pass and ended as `want`.
fn ends_as(program: &str, timeout_s: f64, want: Outcome) -> SandboxOutcome {
    let out = run_python(program, &limits(timeout_s)).unwrap();
    assert!(!out.status.passed(), "{program}\n{out:?}");
    assert_eq!(out.status, want, "{program}\n{out:?}");
    out
}

/// Runs `program` (5 s), which must pass; returns its outcome.
fn passes(program: &str) -> SandboxOutcome {
    let out = run_python(program, &limits(5.0)).unwrap();
    assert_eq!(out.status, Outcome::Passed, "{out:?}");
    out
}

/// Runs `program` (5 s), which must leave early with status 0, not pass.
fn leaves_early(program: &str) {
    ends_as(program, 5.0, Outcome::LeftEarly { exit_code: 0 });
}

#[test]
fn exiting_with_status_0_is_leaving_early_not_passing() {
    // Around the guard (which makes os._exit raise: a reported failure).
    ends_as(
        "import os\nos._exit(0)\n",
        5.0,
        Outcome::Failed { exit_code: 1 },
    );
    leaves_early("import posix\nposix._exit(0)\nassert False\n");
    // From another module, a thread, native code.
    leaves_early("import importlib\nimportlib.import_module('posix')._exit(0)\n");
    leaves_early("import posix, threading, time\nthreading.Thread(target=lambda: posix._exit(0)).start()\ntime.sleep(5)\nassert False\n");
    let native = run_python(
        "import ctypes\nctypes.CDLL(None)._exit(0)\nassert False\n",
        &limits(5.0),
    )
    .unwrap();
    assert!(
        matches!(native.status, Outcome::LeftEarly { exit_code: 0 })
            || native.stderr.contains("ctypes"),
        "{native:?}"
    );
    // The status is not what decides: any code, as long as the prelude did not report.
    ends_as(
        "import posix\nposix._exit(1)\n",
        5.0,
        Outcome::LeftEarly { exit_code: 1 },
    );
}

#[test]
fn system_exit_and_abort_do_not_pass() {
    for program in [
        "raise SystemExit(0)\n",
        "import sys\nsys.exit(0)\n",
        "exit(0)\n",
    ] {
        let out = ends_as(program, 5.0, Outcome::Failed { exit_code: 1 });
        assert!(
            out.stderr.contains("Error") || out.stderr.contains("Exit"),
            "{out:?}"
        );
    }
    ends_as(
        "import os\nos.abort()\n",
        5.0,
        Outcome::Killed {
            signal: libc::SIGABRT,
        },
    );
}

#[test]
fn replacing_the_process_does_not_pass() {
    ends_as(
        "import os\nos.execv('/bin/true', ['true'])\n",
        5.0,
        Outcome::Failed { exit_code: 1 },
    );
    leaves_early("import posix\nposix.execv('/bin/true', ['true'])\n");
    // Another interpreter, handed every descriptor, writing a report-like line to each.
    leaves_early("import os, posix, sys\nfor fd in range(3, 64):\n    try:\n        os.set_inheritable(fd, True)\n    except OSError:\n        pass\ncode = 'import os\\nfor fd in range(1024):\\n    try:\\n        os.write(fd, b\"P\" + b\"0\" * 64)\\n    except OSError:\\n        pass\\n'\nposix.execv(sys.executable, [sys.executable, '-c', code])\n");
}

#[test]
fn a_forked_child_that_finishes_does_not_pass_for_its_parent() {
    // The child runs through the prelude's end (its copy knows the secret but does not
    // report, not being the process the harness started); the parent hangs.
    let out = ends_as(
        "import posix, time\nif posix.fork() != 0:\n    time.sleep(60)\n",
        1.0,
        Outcome::TimedOut,
    );
    assert!(out.elapsed < Duration::from_secs(3), "{:?}", out.elapsed);
    // The parent waits for that child, then leaves with status 0.
    leaves_early("import posix\npid = posix.fork()\nif pid != 0:\n    posix.waitpid(pid, 0)\n    posix._exit(0)\n");
}

#[test]
fn printing_a_success_marker_does_not_pass() {
    leaves_early("import posix, sys\nprint('P' + '0' * 64)\nprint('PASSED')\nprint('ok', True, 0)\nsys.stderr.write('P\\n')\nsys.stdout.flush()\nposix._exit(0)\n");
}

#[test]
fn writing_to_every_descriptor_does_not_pass() {
    let spray = "import os\nfor fd in range(1024):\n    for data in (b'P', b'P' + b'0' * 64, b'P' + b'f' * 64 + b'\\n', b'F'):\n        try:\n            os.write(fd, data)\n        except OSError:\n            pass\n";
    leaves_early(&format!("{spray}import posix\nposix._exit(0)\n"));
    // Even running to the end afterwards: the report pipe then holds more than the report.
    leaves_early(spray);
    // stdout replaced by each descriptor in turn, printing report-like lines.
    leaves_early("import os, posix\nfor fd in range(3, 64):\n    try:\n        os.dup2(fd, 1)\n    except OSError:\n        continue\n    try:\n        print('P' + '0' * 64, flush=True)\n    except OSError:\n        pass\nposix._exit(0)\n");
    // A descriptor of the harness redirected to stdout: the prelude's report then misses its
    // pipe, so even a program that runs to its end does not pass.
    leaves_early("import os\nfor fd in range(3, 64):\n    try:\n        os.dup2(1, fd)\n    except OSError:\n        pass\n");
}

#[test]
fn the_program_cannot_read_the_secrets() {
    // Nothing of the secret in argv, the environment, or any open descriptor the program can
    // read (the report pipe, reopened for reading, is empty while the program runs).
    let program = "import os, sys\nassert len(sys.argv) == 1, sys.argv\nseen = []\nfor name in os.listdir('/proc/self/fd'):\n    try:\n        fd = os.open('/proc/self/fd/' + name, os.O_RDONLY | os.O_NONBLOCK)\n    except OSError:\n        continue\n    try:\n        seen.append(os.read(fd, 4096))\n    except OSError:\n        pass\nassert not any(len(s) >= 64 for s in seen), seen\nprint('ok')\n";
    let out = passes(program);
    assert_eq!(out.stdout, "ok\n");
}

#[test]
fn a_stolen_failure_report_does_not_make_a_pass() {
    // The exception's `__str__` runs after the prelude's failure report: it reads that report
    // back out of the pipe, writes variants of it, and leaves with status 0.
    let program = "import os, posix\nclass Steal(Exception):\n    def __str__(self):\n        for name in os.listdir('/proc/self/fd'):\n            fd = int(name)\n            if fd < 3:\n                continue\n            try:\n                r = os.open('/proc/self/fd/%d' % fd, os.O_RDONLY | os.O_NONBLOCK)\n                data = os.read(r, 4096)\n            except OSError:\n                continue\n            if data:\n                print('stolen', len(data), flush=True)\n                os.write(fd, b'P' + data[1:])\n        posix._exit(0)\nraise Steal()\n";
    let out = run_python(program, &limits(5.0)).unwrap();
    assert!(!out.status.passed(), "{out:?}");
    if out.stdout.contains("stolen 64") {
        // Taken and rewritten: no report left.
        assert_eq!(out.status, Outcome::LeftEarly { exit_code: 0 }, "{out:?}");
    } else {
        // Where the pipe cannot be reopened (as in a user namespace), the report stays.
        eprintln!("the report pipe could not be reopened here");
        assert_eq!(out.status, Outcome::Failed { exit_code: 0 }, "{out:?}");
    }
}
