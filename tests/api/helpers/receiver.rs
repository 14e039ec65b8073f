//! Local HTTP servers on 127.0.0.1 for the service (or the simulator) to talk to: [`Receiver`]
//! stands in for Slack, PagerDuty and a generic webhook, answering from a script and keeping every
//! request for the test to inspect; [`serve`] runs any other stand-in router.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::DEADLINE;

/// Serves `router` on `listener` until the returned task is aborted (or the test ends).
pub fn serve(listener: TcpListener, router: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("stand-in serves");
    })
}

/// A loopback port that nothing listens on (yet).
pub async fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    listener.local_addr().expect("address")
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub body: Value,
}

/// One scripted answer: a status and an optional `Retry-After`.
pub type Answer = (u16, Option<&'static str>);

/// How a receiver answers: the scripted answers in order, then 200 forever.
#[derive(Clone, Default)]
struct ReceiverState {
    script: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// An alert receiver on 127.0.0.1: every request is recorded, whatever its path.
pub struct Receiver {
    address: SocketAddr,
    state: ReceiverState,
    server: JoinHandle<()>,
}

async fn receive(State(state): State<ReceiverState>, uri: Uri, body: Bytes) -> impl IntoResponse {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.received.lock().expect("lock").push(Received {
        at: Instant::now(),
        path: uri.path().to_owned(),
        body,
    });
    let next = state.script.lock().expect("lock").pop_front();
    let (status, retry_after) = next.unwrap_or((200, None));
    let status = StatusCode::from_u16(status).expect("status");
    let mut headers = HeaderMap::new();
    if let Some(value) = retry_after {
        headers.insert("retry-after", value.parse().expect("header"));
    }
    (status, headers, "ok")
}

impl Receiver {
    /// A receiver on a free port that answers `script`, then 200.
    pub async fn start(script: &[Answer]) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address"), script).await
    }

    /// A receiver on `address` (e.g. one from [`free_port`]) that answers `script`, then 200.
    pub async fn start_on(address: SocketAddr, script: &[Answer]) -> Self {
        let state = ReceiverState::default();
        state
            .script
            .lock()
            .expect("lock")
            .extend(script.iter().copied());
        let listener = TcpListener::bind(address).await.expect("receiver binds");
        let address = listener.local_addr().expect("address");
        let router = Router::new().fallback(receive).with_state(state.clone());
        let server = serve(listener, router);
        Self {
            address,
            state,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// Waits until at least `n` requests arrived, then returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "expected {n} requests, got {}: {received:?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for `n` requests, then makes sure no further one arrives for `quiet`.
    pub async fn expect_exactly(&self, n: usize, quiet: Duration) -> Vec<Received> {
        self.wait_for(n).await;
        tokio::time::sleep(quiet).await;
        let received = self.received();
        assert_eq!(
            received.len(),
            n,
            "more requests than expected: {received:?}"
        );
        received
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
