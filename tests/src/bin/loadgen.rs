//! A load generator for the API benchmark (`scripts/bench-api`).
//!
//! Seeds an account with instances, then drives each scenario with N keep-alive HTTP/1.1
//! connections for a fixed time, and prints requests per second and p50/p99 latency as a Markdown
//! table, with each scenario's throughput relative to `/health` (the framework's own ceiling here).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

struct Options {
    addr: SocketAddr,
    token: String,
    connections: usize,
    duration: Duration,
    seed: usize,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        addr: "127.0.0.1:8080".parse().map_err(|_| "address")?,
        token: String::new(),
        connections: 64,
        duration: Duration::from_secs(10),
        seed: 1000,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => options.addr = value.parse().map_err(|_| "--addr host:port")?,
            "--token" => options.token = value,
            "--connections" => options.connections = value.parse().map_err(|_| "--connections N")?,
            "--seconds" => options.duration = Duration::from_secs(value.parse().map_err(|_| "--seconds N")?),
            "--seed" => options.seed = value.parse().map_err(|_| "--seed N")?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if options.token.is_empty() {
        return Err("--token is required (an account token with high limits)".into());
    }
    Ok(options)
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, Box<dyn std::error::Error>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request and reads the whole answer; returns the status.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    token: &str,
    body: Option<String>,
) -> Result<u16, Box<dyn std::error::Error>> {
    sender.ready().await?;
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "bench")
        .header("token", token)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    // Read every frame and drop it: buffering ~1 MB `list` bodies would bench the load generator.
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(status)
}

struct Measured {
    name: &'static str,
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[rank]) / 1000.0
    }
}

async fn run(options: &Options, name: &'static str, path: &'static str) -> Measured {
    // A short warm-up fills caches and connection pools before anything is counted.
    let warmup = Instant::now() + Duration::from_secs(1);
    let start = warmup;
    let end = start + options.duration;
    let mut tasks = Vec::new();
    for _ in 0..options.connections {
        let (addr, token) = (options.addr, options.token.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let Ok(mut sender) = connect(addr).await else {
                return (latencies, 1);
            };
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let ok = matches!(send(&mut sender, "GET", path, &token, None).await, Ok(200));
                if sent >= start {
                    if ok {
                        latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut measured =
        Measured { name, requests: 0, errors: 0, elapsed: options.duration, latencies_us: Vec::new() };
    for task in tasks {
        if let Ok((latencies, errors)) = task.await {
            measured.requests += latencies.len();
            measured.errors += errors;
            measured.latencies_us.extend(latencies);
        }
    }
    measured.latencies_us.sort_unstable();
    measured
}

async fn seed(options: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let mut sender = connect(options.addr).await?;
    for n in 0..options.seed {
        let body = format!(r#"{{"name":"bench-{n:05}"}}"#);
        let status = send(&mut sender, "POST", "/api/instance/new", &options.token, Some(body)).await?;
        if !matches!(status, 201 | 409) {
            return Err(format!("seeding instance {n} answered {status}").into());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options().map_err(|e| format!("loadgen: {e}"))?;
    seed(&options).await?;
    let scenarios = [
        ("GET /health", "/health"),
        ("GET getSettings", "/api/instance/getSettings/bench-00000"),
        ("GET list (1,000 instances)", "/api/instance/list"),
    ];
    let mut results = Vec::new();
    for (name, path) in scenarios {
        results.push(run(&options, name, path).await);
    }
    let ceiling = results[0].rate();
    println!(
        "| scenario ({} connections, {} s) | requests/s | p50 ms | p99 ms | vs /health | errors |",
        options.connections,
        options.duration.as_secs()
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            r.name,
            r.rate(),
            r.percentile_ms(0.50),
            r.percentile_ms(0.99),
            r.rate() / ceiling,
            r.errors
        );
    }
    Ok(())
}
