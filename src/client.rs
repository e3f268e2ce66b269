//! A minimal client of a running arbiter server, for the command line (`arbiter check
//! --server`, `arbiter simulate`): one request per connection, plain HTTP.

use http_body_util::{BodyExt, Full};

/// A server at an `http://` URL, called with an API key.
pub struct Remote {
    host: String,
    port: u16,
    /// Any path the URL has before `/api/v1` (a server behind a prefix), without a trailing `/`.
    prefix: String,
    key: String,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// `url` names the flag it came from in errors (`--server`).
    pub fn new(url: &str, key: String) -> Result<Remote, String> {
        let bad = |why: &str| format!("--server `{url}`: {why}");
        let uri: hyper::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => return Err(bad(&format!("{other} is not supported; give the server's http:// address"))),
            None => return Err(bad("expected a URL such as http://127.0.0.1:8080")),
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?.trim_matches(['[', ']']).to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(Remote { host, port: uri.port_u16().unwrap_or(80), prefix, key, runtime })
    }

    /// `POST {prefix}{path}` with `body`; the status and body of the reply.
    pub fn post(&self, path: &str, content_type: &str, body: String) -> Result<(u16, bytes::Bytes), String> {
        self.runtime.block_on(self.send(path, content_type, body))
    }

    /// One request on its own connection (a handful per command: no pooling needed).
    async fn send(&self, path: &str, content_type: &str, body: String) -> Result<(u16, bytes::Bytes), String> {
        let unreachable =
            |e: &dyn std::fmt::Display| format!("cannot reach the server at {}:{}: {e}", self.host, self.port);
        let stream =
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| unreachable(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(connection);
        let request = hyper::Request::post(format!("{}{path}", self.prefix))
            .header(hyper::header::HOST, format!("{}:{}", self.host, self.port))
            .header("x-api-key", &self.key)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| unreachable(&e))?.to_bytes();
        Ok((status, body))
    }
}

/// An error reply's `error.message`, or the body as text.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}
