//! The signals that stop a process gracefully, shared by the service and the log simulator.

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (Kubernetes stopping a pod), logging which; a signal
/// that cannot be listened for is logged and never fires, leaving the other one.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "Cannot listen for Ctrl-C.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down."),
        () = terminate => tracing::info!("SIGTERM received; shutting down."),
    }
}
