//! The MCP door: the Model Context Protocol over Streamable HTTP at `/mcp`, with the official Rust
//! SDK (`rmcp`). An adapter like the REST handlers: its tools decode their arguments into the
//! service's own types and call the same services (`IngestService::ingest` for logs), so an agent
//! and a curl script see the same detector.
//!
//! Stateless, with JSON responses: every POST is answered on its own, no `Mcp-Session-Id` is
//! issued, so replicas behind a Service need no sticky sessions. rmcp refuses a POST whose
//! `Accept` lacks `application/json` or `text/event-stream` (406), a `Host` outside
//! `MCP_ALLOWED_HOSTS` (403, against DNS rebinding) and an `Origin` outside
//! `MCP_ALLOWED_ORIGINS` (403); the token check (`api::auth`) runs before all of it.

mod server;
pub mod types;

use std::sync::Arc;

use axum::Router;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

pub use self::server::AnomalyServer;
use crate::api::AppState;
use crate::api::auth::MCP_PATH;
use crate::settings::Settings;

/// `/mcp`, merged into `api::router()`.
pub fn router(state: &AppState) -> Router<AppState> {
    let server = AnomalyServer::new(state.clone());
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        transport_config(&state.settings),
    );
    Router::new().nest_service(MCP_PATH, service)
}

/// Stateless JSON mode, the allowed hosts and origins, and the body limit of REST.
fn transport_config(settings: &Settings) -> StreamableHttpServerConfig {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(settings.max_body_bytes);
    let config = if settings.mcp_allowed_hosts.iter().any(|host| host == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(settings.mcp_allowed_hosts.iter().cloned())
    };
    if settings
        .mcp_allowed_origins
        .iter()
        .any(|origin| origin == "*")
    {
        config.disable_allowed_origins()
    } else {
        // An empty list refuses every `Origin`: agents do not send one, browsers do.
        config
            .with_allowed_origins(settings.mcp_allowed_origins.iter().cloned())
            .enforce_origin_validation()
    }
}
