//! `embedrt-bench`: a load generator for OpenAI-style embedding endpoints.
//!
//! N concurrent clients send requests back to back for a fixed time, each request holding K inputs
//! drawn in turn from a text file (so requests differ); latency is recorded per request. Works
//! against any server that speaks `POST /v1/embeddings` (embedrt, Infinity, TEI, vLLM).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;

/// Load generator for embedding servers.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The embeddings endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/embeddings")]
    url: String,
    /// The `model` field of each request.
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    model: String,
    /// Concurrent clients.
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Seconds of measured load.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unmeasured load first.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Inputs per request.
    #[arg(long, short = 'b', default_value_t = 1)]
    batch: usize,
    /// Comma-separated `task` values, used in turn by successive requests (e.g. all five
    /// jina-v3 adapters, to measure mixed-task batches); none: requests carry no `task`.
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Text file with one input per line.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sentences.txt"))]
    inputs: PathBuf,
    /// Write the summary as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A label for the summary (engine, server).
    #[arg(long, default_value = "")]
    label: String,
}

/// What one run measured.
#[derive(Debug, Serialize)]
struct Summary {
    label: String,
    concurrency: usize,
    batch: usize,
    seconds: f64,
    requests: u64,
    errors: u64,
    requests_per_s: f64,
    inputs_per_s: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// One client's tally.
struct Tally {
    latencies_us: Histogram<u64>,
    errors: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let texts: Vec<String> = std::fs::read_to_string(&args.inputs)
        .with_context(|| format!("cannot read {}", args.inputs.display()))?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect();
    if texts.is_empty() || args.concurrency == 0 || args.batch == 0 {
        bail!("need inputs, at least one client and at least one input per request");
    }
    let texts = Arc::new(texts);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;

    run_clients(&args, &client, &texts, args.warmup).await?;
    let started = Instant::now();
    let tallies = run_clients(&args, &client, &texts, args.duration).await?;
    let seconds = started.elapsed().as_secs_f64();

    let mut latencies = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for tally in tallies {
        latencies.add(&tally.latencies_us)?;
        errors += tally.errors;
    }
    let requests = latencies.len();
    let ms = |us: u64| us as f64 / 1000.0;
    let summary = Summary {
        label: args.label.clone(),
        concurrency: args.concurrency,
        batch: args.batch,
        seconds,
        requests,
        errors,
        requests_per_s: requests as f64 / seconds,
        inputs_per_s: (requests as usize * args.batch) as f64 / seconds,
        p50_ms: ms(latencies.value_at_quantile(0.50)),
        p95_ms: ms(latencies.value_at_quantile(0.95)),
        p99_ms: ms(latencies.value_at_quantile(0.99)),
        max_ms: ms(latencies.max()),
    };
    println!(
        "{} c={} b={}: {:.1} req/s, {:.1} inputs/s, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} errors / {} requests",
        summary.label,
        summary.concurrency,
        summary.batch,
        summary.requests_per_s,
        summary.inputs_per_s,
        summary.p50_ms,
        summary.p95_ms,
        summary.p99_ms,
        summary.max_ms,
        summary.errors,
        summary.requests
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(())
}

/// Runs `args.concurrency` clients for `seconds`; successful requests' latencies are recorded.
async fn run_clients(
    args: &Args,
    client: &reqwest::Client,
    texts: &Arc<Vec<String>>,
    seconds: f64,
) -> Result<Vec<Tally>> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..args.concurrency)
        .map(|id| {
            let (client, texts) = (client.clone(), Arc::clone(texts));
            let (url, model, batch, clients) = (
                args.url.clone(),
                args.model.clone(),
                args.batch,
                args.concurrency,
            );
            let tasks = args.tasks.clone();
            tokio::spawn(async move {
                let mut tally = Tally {
                    latencies_us: Histogram::new(3)?,
                    errors: 0,
                };
                let mut next = id * batch;
                while Instant::now() < deadline {
                    let input: Vec<&str> = (0..batch)
                        .map(|k| texts[(next + k) % texts.len()].as_str())
                        .collect();
                    let mut body = json!({ "model": model, "input": input });
                    if !tasks.is_empty() {
                        body["task"] = json!(tasks[(next / batch) % tasks.len()]);
                    }
                    next += batch * clients;
                    let sent = Instant::now();
                    let ok = match client.post(&url).json(&body).send().await {
                        Ok(response) => {
                            response.status().is_success() && response.bytes().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    if ok {
                        tally
                            .latencies_us
                            .record(sent.elapsed().as_micros() as u64)?;
                    } else {
                        tally.errors += 1;
                    }
                }
                anyhow::Ok(tally)
            })
        })
        .collect();
    let mut tallies = Vec::with_capacity(handles.len());
    for handle in handles {
        tallies.push(handle.await??);
    }
    Ok(tallies)
}
