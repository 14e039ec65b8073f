//! PostgreSQL for the tests that share state between replicas: a fresh schema each (the same
//! helper as the library's unit tests), and a proxy that plays a server going away.

#[path = "../../../src/store/postgres/test_schema.rs"]
mod test_schema;

pub use test_schema::{fresh_schema as fresh_database_url, server_url};

/// A TCP proxy in front of PostgreSQL that the test can take down and bring back on the same
/// port: to the service, exactly a database server that stopped (connections reset, new ones
/// refused) and restarted, without stopping the server other tests share.
pub struct PostgresProxy {
    pub port: u16,
    /// `host:port` as the server's URL names it.
    upstream_authority: String,
    upstream: std::net::SocketAddr,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl PostgresProxy {
    /// A proxy on a free port to the server of [`server_url`] (127.0.0.1:5432 unless
    /// `TEST_DATABASE_URL` says otherwise).
    pub async fn start() -> Self {
        let url = server_url();
        let config: tokio_postgres::Config = url.parse().expect("TEST_DATABASE_URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("resolve")
            .next()
            .expect("an address");
        let free = super::free_port().await.port();
        let mut proxy = Self {
            port: free,
            upstream_authority: format!("{host}:{port}"),
            upstream,
            running: None,
        };
        proxy.resume().await;
        proxy
    }

    /// `url` (a `DATABASE_URL` from [`fresh_database_url`]) through this proxy.
    pub fn route(&self, url: &str) -> String {
        url.replacen(
            &format!("@{}/", self.upstream_authority),
            &format!("@127.0.0.1:{}/", self.port),
            1,
        )
    }

    /// Takes the database away: every open connection is cut, new ones are refused.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
            let _ = running.await;
        }
    }

    /// Brings it back on the same port.
    pub async fn resume(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the proxy's port is free again");
        let upstream = self.upstream;
        self.running = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }
}

impl Drop for PostgresProxy {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
        }
    }
}
