//! `bench-exec TIME_FILE PROGRAM [ARG...]`: runs PROGRAM (a plugin, or cnitool) with
//! this process's environment, stdin, stdout and stderr, writes how long it ran
//! (microseconds, from just before the spawn to the end of the wait) to TIME_FILE,
//! and exits with PROGRAM's exit code.
//!
//! bench/run.sh times every plugin call through this rather than around a command
//! in bash. A runtime starts a plugin from a Go (or Rust) process with a vfork-style
//! spawn; bash forks itself first, copying its page tables and taking copy-on-write
//! faults in the child, which added 0.2–0.4 ms to every call of either
//! implementation on the bench machine. That cost belongs to the harness, not to the
//! plugin.

use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [time_file, program, program_args @ ..] = args.as_slice() else {
        eprintln!("usage: bench-exec TIME_FILE PROGRAM [ARG...]");
        return ExitCode::from(2);
    };
    let start = Instant::now();
    let status = match Command::new(program).args(program_args).status() {
        Ok(status) => status,
        Err(e) => {
            eprintln!("bench-exec: {program}: {e}");
            return ExitCode::from(127);
        }
    };
    let micros = start.elapsed().as_micros();
    if let Err(e) = std::fs::write(time_file, format!("{micros}\n")) {
        eprintln!("bench-exec: {time_file}: {e}");
        return ExitCode::from(2);
    }
    // Killed by a signal counts as a failure, like any non-zero code.
    let code = status.code().unwrap_or(128);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
