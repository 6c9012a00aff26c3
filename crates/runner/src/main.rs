//! The `sluicegate` binary. See `sluicegate --help`.

use std::io::IsTerminal;

use sluicegate_runner::app;
use sluicegate_runner::app::cli::{Cli, Command, LogFormat};
use sluicegate_runner::host::exit;

/// mimalloc instead of glibc's malloc: records are allocated on one thread
/// and freed on another (the consumer thread, the runtime's workers, the
/// blocking pool, librdkafka's threads), where glibc's arenas contend on
/// their locks (docs/BENCHMARKS.md, section E).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with code 0; mistakes to stderr with 2.
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    init_logging(cli.log_format);
    // A panic in a stage fails only its record (it goes to the dead-letter
    // topic with the message); log it as one line, not a backtrace each.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        tracing::error!(%location, "panic: {message}");
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluicegate: cannot start the async runtime: {e}");
            std::process::exit(exit::FAILED);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => {
                let settings = args
                    .settings()
                    .map_err(|e| app::AppError::Config(e.to_string()))?;
                app::run(settings, args.run_options()).await
            }
            Command::Produce(args) => app::produce(args.options()).await,
        }
    });
    // Kafka clients and the blocking pool may still be winding down; the
    // outcome is decided, so do not wait for them (not at all after a
    // forced stop: the abandoned graph is still unwinding).
    if matches!(result, Ok(exit::FORCED)) {
        runtime.shutdown_background();
    } else {
        runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    }
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("sluicegate: {e}");
            std::process::exit(e.exit_code());
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,librdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sluicegate_runner::host::view::LogWriter);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}
