//! An open-loop HTTP/1.1 load generator for `scripts/http-load`: a fixed request rate
//! over keep-alive connections, with each request's latency measured from the moment it
//! was *scheduled* (so a stalled server is charged for the requests queued behind it, as
//! wrk2 does; no coordinated omission).
//!
//! A pacing thread releases tickets at the target rate with `thread::sleep` (tens of µs
//! of slack, not tokio's 1 ms timer); `--connections` tasks on a single-threaded tokio
//! runtime take tickets in order, send the request and read the response
//! (Content-Length framed). Loopback only: the address must be 127.0.0.0/8 or ::1.
//!
//! ```sh
//! cargo run --release --example load_gen -- --addr 127.0.0.1:18080 --rate 5000 \
//!     --duration 10 --connections 32 --path /api/v1/recommend --body '{}' \
//!     --header 'Content-Type: application/json'
//! ```
//! Prints one line: `rate=… sent=… ok=… errors=… achieved=…/s p50_us=… p90_us=… p99_us=…
//! p999_us=… max_us=… from_send_p50_us=… from_send_p99_us=…` (the last two measured from
//! the write instead of the schedule: the generator's own lateness left out).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};

struct Args {
    addr: SocketAddr,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    connections: usize,
    request: Vec<u8>,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut rate = 1000.0;
    let mut duration = 10.0;
    let mut warmup = 1.0;
    let mut connections = 32;
    let mut path = "/".to_string();
    let mut method = None;
    let mut body = None;
    let mut headers = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = Some(value()?.parse::<SocketAddr>().map_err(|e| format!("--addr: {e}"))?),
            "--rate" => rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--duration" => duration = value()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--warmup" => warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--connections" => connections = value()?.parse().map_err(|e| format!("--connections: {e}"))?,
            "--path" => path = value()?,
            "--method" => method = Some(value()?),
            "--body" => body = Some(value()?),
            "--body-file" => body = Some(std::fs::read_to_string(value()?).map_err(|e| format!("--body-file: {e}"))?),
            "--header" => headers.push(value()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let addr = addr.ok_or("--addr is required")?;
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address; this generator only targets this machine"));
    }
    let valid = rate > 0.0 && rate <= 1e6 && (0.0..=300.0).contains(&duration) && (0.0..=60.0).contains(&warmup);
    if !valid {
        return Err("--rate must be in (0, 1e6], --duration in [0, 300] s, --warmup in [0, 60] s".into());
    }
    if connections == 0 || connections > 4096 {
        return Err("--connections must be 1..=4096".into());
    }
    let method = method.unwrap_or_else(|| if body.is_some() { "POST".into() } else { "GET".into() });
    let body = body.unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in &headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    Ok(Args {
        addr,
        rate,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        connections,
        request: request.into_bytes(),
    })
}

/// Reads one response; returns its status. Needs a Content-Length header.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    buf.clear();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(bad("connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("non-UTF-8 head"))?;
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status"))?;
    let length: usize = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| bad("no Content-Length"))?;
    let mut have = buf.len() - head_end;
    while have < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(bad("connection closed inside the body"));
        }
        have += n;
    }
    Ok(status)
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    /// From the moment the request was written, not scheduled: the server's part alone.
    service_us: Vec<u32>,
    sent: u64,
    ok: u64,
    errors: u64,
}

async fn connection(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    tickets: Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>,
    record_from: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(16384);
    loop {
        let Some(scheduled) = tickets.lock().await.recv().await else { break };
        tally.sent += 1;
        if stream.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(_) => {
                    tally.errors += 1;
                    continue;
                }
            }
        }
        let s = stream.as_mut().expect("connected");
        let sent = Instant::now();
        let result = match s.write_all(&request).await {
            Ok(()) => read_response(s, &mut buf).await,
            Err(e) => Err(e),
        };
        let done = Instant::now();
        match result {
            Ok(status) if (200..300).contains(&status) => {
                tally.ok += 1;
                if scheduled >= record_from {
                    let us = done.saturating_duration_since(scheduled).as_micros().min(u32::MAX as u128) as u32;
                    tally.latencies_us.push(us);
                    let us = done.saturating_duration_since(sent).as_micros().min(u32::MAX as u128) as u32;
                    tally.service_us.push(us);
                }
            }
            Ok(_) => tally.errors += 1,
            Err(_) => {
                tally.errors += 1;
                stream = None;
            }
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Asks Linux for 1 ns of timer slack on this thread instead of the default 50 µs, so the
/// pacer wakes closer to each ticket's time (the VM's own wake-up latency remains).
#[cfg(target_os = "linux")]
fn fine_timer_slack() {
    extern "C" {
        fn prctl(option: i32, ...) -> i32;
    }
    const PR_SET_TIMERSLACK: i32 = 29;
    // SAFETY: prctl(PR_SET_TIMERSLACK, n) only changes this thread's timer slack.
    unsafe {
        prctl(PR_SET_TIMERSLACK, 1u64);
    }
}

#[cfg(not(target_os = "linux"))]
fn fine_timer_slack() {}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (sender, receiver) = mpsc::unbounded_channel::<Instant>();
    let receiver = Arc::new(Mutex::new(receiver));
    let request = Arc::new(args.request);
    let start = Instant::now() + Duration::from_millis(50);
    let record_from = start + args.warmup;
    let end = record_from + args.duration;
    let stop = Arc::new(AtomicBool::new(false));

    // The pacer: ticket k is due at start + k/rate; it sleeps (with thread::sleep's fine
    // granularity) until the next one is due and releases every due ticket.
    let pacer = {
        let stop = stop.clone();
        let interval = Duration::from_secs_f64(1.0 / args.rate);
        std::thread::spawn(move || {
            fine_timer_slack();
            let mut k: u64 = 0;
            loop {
                let due = start + interval.mul_f64(k as f64);
                if due >= end || stop.load(Ordering::Relaxed) {
                    break;
                }
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let now = Instant::now();
                loop {
                    let due = start + interval.mul_f64(k as f64);
                    if due > now || due >= end {
                        break;
                    }
                    if sender.send(due).is_err() {
                        return;
                    }
                    k += 1;
                }
            }
            // Dropping the sender ends the connection tasks once the queue is empty.
        })
    };

    let tallies = runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..args.connections {
            tasks.push(tokio::spawn(connection(args.addr, request.clone(), receiver.clone(), record_from)));
        }
        // A hard stop: never run past the schedule by more than 10 s, whatever the server does.
        let all = async {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap_or_default());
            }
            out
        };
        match tokio::time::timeout(end.saturating_duration_since(Instant::now()) + Duration::from_secs(10), all).await {
            Ok(t) => t,
            Err(_) => {
                eprintln!("error: the server did not keep up; stopped 10 s after the schedule ended");
                stop.store(true, Ordering::Relaxed);
                std::process::exit(1);
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    let _ = pacer.join();

    let mut all = Vec::new();
    let mut service = Vec::new();
    let (mut sent, mut ok, mut errors) = (0, 0, 0);
    for t in tallies {
        all.extend_from_slice(&t.latencies_us);
        service.extend_from_slice(&t.service_us);
        sent += t.sent;
        ok += t.ok;
        errors += t.errors;
    }
    all.sort_unstable();
    service.sort_unstable();
    let measured = all.len() as f64 / args.duration.as_secs_f64().max(1e-9);
    println!(
        "rate={} sent={} ok={} errors={} achieved={:.0}/s p50_us={} p90_us={} p99_us={} p999_us={} max_us={} from_send_p50_us={} from_send_p99_us={}",
        args.rate,
        sent,
        ok,
        errors,
        measured,
        percentile(&all, 50.0),
        percentile(&all, 90.0),
        percentile(&all, 99.0),
        percentile(&all, 99.9),
        all.last().copied().unwrap_or(0),
        percentile(&service, 50.0),
        percentile(&service, 99.0)
    );
}
