//! `agentic`: parse the command line, run the subcommand.

use clap::Parser;

fn main() -> std::process::ExitCode {
    single_threaded_kernels();
    let cli = api_actix::cli::Cli::parse();
    // A document-reading child of the server: no logging, no runtime of ours, limits first.
    if let Some(code) = cli.run_extraction_child() {
        return code;
    }
    api_actix::cli::init_tracing();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(cli.run()));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The local embedder runs whole batches side by side, one per core; Candle's matrix products
/// would also split each product across every core, which at these sizes costs more than it
/// gains (`just bench-embed`: 150 against 112 sentences/s). Candle reads its thread count only
/// from `RAYON_NUM_THREADS`, and setting the environment of a running process is unsound, so the
/// process starts itself again with it set, before any thread exists. An explicit setting wins.
fn single_threaded_kernels() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("RAYON_NUM_THREADS", "1")
        .exec();
    // Only reached when exec failed: run on as we are.
    eprintln!("agentic: could not restart with RAYON_NUM_THREADS=1 ({error}); continuing");
}
