//! `sling-proxy`: parse the command line, set up logging, run the proxy until SIGTERM or ctrl-c.

use clap::{CommandFactory, Parser, error::ErrorKind};
use sling_proxy::{Args, Config, init_tracing};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_format);
    let config = match Config::try_from(args) {
        Ok(config) => config,
        // Reported like any other bad flag: usage line, message, exit code 2.
        Err(error) => Args::command()
            .error(ErrorKind::ValueValidation, error)
            .exit(),
    };
    sling_proxy::run(config, sling_proxy::shutdown_signal()).await
}
