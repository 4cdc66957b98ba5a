//! `accord`: one binary for every role in a federation.
//!
//! `main` only parses the command line, runs the command, and is the one
//! place an error leaves the program: printed once, with its causes, and a
//! non-zero exit code.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod agreement;
mod audit;
mod bench;
mod bench_exchange;
mod bench_relay;
mod cli;
mod client;
mod commands;
mod demo;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: a gateway allocates and frees many
/// small buffers per exchange across threads, and glibc's allocator spent
/// about a sixth of a gateway's CPU under load in `malloc`, `free` and
/// `malloc_consolidate` (measured with `perf` during `accord bench
/// exchange`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ACCORD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.default_log_filter()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.worker_threads() {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
