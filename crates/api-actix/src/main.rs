//! `agentic`: parse the command line, run the subcommand.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = api_actix::cli::Cli::parse();
    api_actix::cli::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(cli.run())
}
