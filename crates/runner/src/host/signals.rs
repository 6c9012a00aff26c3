//! SIGINT and SIGTERM for the runner (Ctrl-C where there are no Unix
//! signals).

/// SIGINT and SIGTERM, or nothing when signal handling is off.
pub(crate) struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    #[cfg(not(unix))]
    enabled: bool,
}

impl Signals {
    pub(crate) fn install(enabled: bool) -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = if enabled {
                match (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) {
                    (Ok(int), Ok(term)) => Some((int, term)),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(error = %e, "cannot handle SIGINT/SIGTERM; they will end the process without a drain");
                        None
                    }
                }
            } else {
                None
            };
            Signals { streams }
        }
        #[cfg(not(unix))]
        {
            Signals { enabled }
        }
    }

    /// The next signal's name; never returns when handling is off.
    pub(crate) async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            match &mut self.streams {
                Some((int, term)) => tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                },
                None => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            if !self.enabled {
                return std::future::pending().await;
            }
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
