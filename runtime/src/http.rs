//! Outbound HTTP: one way to build a client, with timeouts and TLS set up.

use std::time::Duration;

/// Installs the process-wide TLS crypto provider (ring) once. reqwest is built without a default
/// provider to keep the dependency tree lean, and panics if none is installed.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client with connect and request timeouts; reqwest's own retries are off (callers decide).
pub fn client(request_timeout: Duration) -> reqwest::Client {
    install_tls_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(request_timeout)
        .retry(reqwest::retry::never())
        .pool_max_idle_per_host(64)
        .build()
        .expect("a reqwest client with a TLS provider installed")
}
