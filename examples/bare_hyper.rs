//! The HTTP baseline for `scripts/http-load`: a bare hyper 1 HTTP/1.1 server that answers
//! every request with a fixed JSON body shaped like a `/api/v1/recommend` response.
//!
//! It does what `arbiter serve` does for HTTP alone — a multi-thread tokio runtime with the
//! default worker count (one per core), one task per connection, keep-alive, TCP_NODELAY —
//! and nothing else: no routing, auth, body parsing or decision. The request body is read
//! (as a real handler must) and dropped.
//!
//! ```sh
//! cargo run --release --example bare_hyper -- 127.0.0.1:18080
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// About 400 bytes, shaped like the tutorial's recommend response.
const BODY: &str = r#"{"recommendationId":"0b6f3c1e-6a53-4e8e-9a1f-3f2d5c7e9b10","customerId":"cust_42","channel":"in_app","decisionFlowKey":"cross-sell","decisions":[{"rank":1,"offerId":"c2a1e0f4-1d1b-4d1e-8f0a-7b6c5d4e3f21","offerName":"Rewards credit card","score":0.412},{"rank":2,"offerId":"9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a","offerName":"High-yield savings","score":0.287}],"count":2,"meta":{"totalCandidates":4,"afterQualification":2}}"#;

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Drain the request body, as a real POST handler would.
    let _ = req.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into())
        .parse()
        .expect("usage: bare_hyper [ADDR:PORT]");
    // The same runtime as `arbiter serve`: multi-thread defaults, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        println!("bare_hyper listening on http://{} ({} body bytes)", listener.local_addr().unwrap(), BODY.len());
        let accept = async {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service_fn(handle))
                        .await;
                });
            }
        };
        tokio::select! {
            () = accept => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
}
