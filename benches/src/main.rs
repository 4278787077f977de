//! `embedrt-bench`: a load generator for embedding and reranking servers.
//!
//! N concurrent clients send requests back to back for a fixed time, each request holding K inputs
//! drawn in turn from a text file (so requests differ); latency is recorded per request. Over HTTP
//! it works against any server that speaks `POST /v1/embeddings` (embedrt, Infinity, TEI, vLLM),
//! or, with `--api rerank`, Cohere's rerank request (embedrt's `/v1/rerank`, Infinity's
//! `/rerank`): a query drawn in turn from `--queries` with K documents, so the inputs counted are
//! (query, document) pairs. Over gRPC it calls embedrt's `Embed`, or keeps one `EmbedStream` per
//! client.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use embedrt_proto::v1 as pb;
use embedrt_proto::v1::embedder_client::EmbedderClient;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// How requests travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// `POST /v1/embeddings`, one connection per client.
    Http,
    /// gRPC `Embed`, every client on one HTTP/2 connection.
    Grpc,
    /// gRPC `EmbedStream`: each client keeps one stream open on the shared connection.
    GrpcStream,
}

/// What the requests ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Api {
    /// OpenAI's embeddings request: K inputs.
    Embeddings,
    /// Cohere's rerank request: a query and K documents (HTTP only).
    Rerank,
}

/// Load generator for embedding and reranking servers.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The embeddings endpoint (HTTP), or the server's address (gRPC, e.g.
    /// `http://127.0.0.1:50051`).
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/embeddings")]
    url: String,
    /// The API to load.
    #[arg(long, value_enum, default_value_t = Protocol::Http)]
    protocol: Protocol,
    /// What each request asks for.
    #[arg(long, value_enum, default_value_t = Api::Embeddings)]
    api: Api,
    /// With `--api rerank`: text file with one query per line, used in turn.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sentences.txt"))]
    queries: PathBuf,
    /// With `grpc-stream`: requests each client keeps in flight on its stream.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
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
    /// Inputs per request (documents, with `--api rerank`).
    #[arg(long, short = 'b', default_value_t = 1)]
    batch: usize,
    /// Comma-separated `task` values, used in turn by successive requests (e.g. all five
    /// jina-v3 adapters, to measure mixed-task batches); none: requests carry no `task`.
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Text file with one input per line.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sentences.txt"))]
    inputs: PathBuf,
    /// Fraction of inputs made unique (a text plus a tag no other input in any run has), so no
    /// cache can answer them; the others cycle through the texts and repeat. 0: all repeat.
    #[arg(long, default_value_t = 0.0)]
    unique: f64,
    /// Write the summary as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A label for the summary (engine, server).
    #[arg(long, default_value = "")]
    label: String,
    /// `KEY=VALUE` facts about the run for the summary's `tags` (the server, its engine, the
    /// setting measured), which `benches/table.py` prints as columns; repeatable.
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// The server's process id (on this machine): the summary then has the CPU time that
    /// process spent during the measured run, per input answered.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// `KEY=VALUE` as a pair.
fn parse_tag(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .ok_or_else(|| format!("a tag is KEY=VALUE, got {text:?}"))
}

/// The user and system CPU time process `pid` has spent, from `/proc/PID/stat`.
///
/// # Errors
///
/// When the file cannot be read or parsed (the process is gone, or this is not Linux).
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read the CPU time of process {pid}"))?;
    // The fields after the parenthesised name: utime is field 14 and stime 15 (1-based).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat has no field {}", i + 3))
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Duration::from_secs_f64(
        (ticks(11)? + ticks(12)?) as f64 / per_second,
    ))
}

/// What one run measured.
#[derive(Debug, Serialize)]
struct Summary {
    label: String,
    tags: BTreeMap<String, String>,
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
    /// With `--server-pid`: the server's CPU milliseconds per input answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_cpu_ms_per_input: Option<f64>,
}

/// One client's tally.
struct Tally {
    latencies_us: Histogram<u64>,
    errors: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let texts = read_lines(&args.inputs)?;
    if texts.is_empty() || args.concurrency == 0 || args.batch == 0 || args.in_flight == 0 {
        bail!("need inputs, at least one client, one input per request and one request in flight");
    }
    if args.api == Api::Rerank && args.protocol != Protocol::Http {
        bail!("--api rerank runs over HTTP only");
    }
    let texts = Arc::new(texts);
    let queries = match args.api {
        Api::Rerank => Arc::new(read_lines(&args.queries)?),
        Api::Embeddings => Arc::new(Vec::new()),
    };
    let connection = match args.protocol {
        Protocol::Http => Connection::Http(
            reqwest::Client::builder()
                .pool_max_idle_per_host(args.concurrency)
                .build()?,
        ),
        Protocol::Grpc | Protocol::GrpcStream => Connection::Grpc(
            EmbedderClient::connect(args.url.clone())
                .await
                .with_context(|| format!("cannot connect to {}", args.url))?,
        ),
    };

    let feeds = (&texts, &queries);
    run_clients(&args, &connection, feeds, args.warmup).await?;
    let cpu_before = args.server_pid.map(cpu_time).transpose()?;
    let started = Instant::now();
    let tallies = run_clients(&args, &connection, feeds, args.duration).await?;
    let seconds = started.elapsed().as_secs_f64();
    let server_cpu = match (args.server_pid, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_time(pid)? - before),
        _ => None,
    };

    let mut latencies = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for tally in tallies {
        latencies.add(&tally.latencies_us)?;
        errors += tally.errors;
    }
    let requests = latencies.len();
    let ms = |us: u64| us as f64 / 1000.0;
    let inputs = requests as usize * args.batch;
    let summary = Summary {
        label: args.label.clone(),
        tags: args.tags.iter().cloned().collect(),
        concurrency: args.concurrency,
        batch: args.batch,
        seconds,
        requests,
        errors,
        requests_per_s: requests as f64 / seconds,
        inputs_per_s: inputs as f64 / seconds,
        p50_ms: ms(latencies.value_at_quantile(0.50)),
        p95_ms: ms(latencies.value_at_quantile(0.95)),
        p99_ms: ms(latencies.value_at_quantile(0.99)),
        max_ms: ms(latencies.max()),
        server_cpu_ms_per_input: server_cpu
            .map(|cpu| cpu.as_secs_f64() * 1000.0 / inputs.max(1) as f64),
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

/// The non-empty lines of the text file `path`.
///
/// # Errors
///
/// When the file cannot be read.
fn read_lines(path: &std::path::Path) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// What the clients share: an HTTP client (one connection per client) or one gRPC channel.
#[derive(Clone)]
enum Connection {
    Http(reqwest::Client),
    Grpc(EmbedderClient<Channel>),
}

/// The requests one client sends: K inputs at a time, drawn in turn from the texts, and the
/// next task in turn (when tasks are given). Clients start at different places. A `unique`
/// fraction of the inputs get a tag that makes them unlike any other input.
struct Feed {
    texts: Arc<Vec<String>>,
    /// Rerank queries, used in turn; empty for embeddings.
    queries: Arc<Vec<String>>,
    tasks: Vec<String>,
    next: usize,
    batch: usize,
    stride: usize,
    unique: f64,
    /// Tags unique inputs (with the input's number): this run's start time and the client's
    /// number, short so that a tagged input is only a few tokens longer.
    tag: String,
    /// Inputs made so far.
    made: u64,
}

impl Feed {
    fn next(&mut self) -> (Vec<String>, Option<String>) {
        let inputs = (0..self.batch)
            .map(|k| {
                let text = &self.texts[(self.next + k) % self.texts.len()];
                self.made += 1;
                // Input n is unique when the running count of unique inputs steps up at n.
                let unique = (self.made as f64 * self.unique).floor()
                    > ((self.made - 1) as f64 * self.unique).floor();
                if unique {
                    format!("{}{:x} {text}", self.tag, self.made)
                } else {
                    text.clone()
                }
            })
            .collect();
        let task = (!self.tasks.is_empty())
            .then(|| self.tasks[(self.next / self.batch) % self.tasks.len()].clone());
        self.next += self.stride;
        (inputs, task)
    }

    /// The JSON body of the next HTTP request for `api`.
    fn http_body(&mut self, api: Api, model: &str) -> serde_json::Value {
        let turn = self.next / self.batch;
        let (input, task) = self.next();
        match api {
            Api::Embeddings => {
                let mut body = json!({ "model": model, "input": input });
                if let Some(task) = task {
                    body["task"] = json!(task);
                }
                body
            }
            Api::Rerank => {
                let query = &self.queries[turn % self.queries.len()];
                json!({ "model": model, "query": query, "documents": input })
            }
        }
    }

    fn grpc(&mut self, model: &str) -> pb::EmbedRequest {
        let (texts, task) = self.next();
        pb::EmbedRequest {
            model: model.to_string(),
            texts,
            task,
            ..Default::default()
        }
    }
}

impl Tally {
    fn new() -> Result<Self> {
        Ok(Self {
            latencies_us: Histogram::new(3)?,
            errors: 0,
        })
    }

    /// Records a request sent at `sent` that succeeded (`ok`) or not.
    fn record(&mut self, sent: Instant, ok: bool) -> Result<()> {
        if ok {
            self.latencies_us
                .record(sent.elapsed().as_micros() as u64)?;
        } else {
            self.errors += 1;
        }
        Ok(())
    }
}

/// Runs `args.concurrency` clients for `seconds`; successful requests' latencies are recorded.
async fn run_clients(
    args: &Args,
    connection: &Connection,
    (texts, queries): (&Arc<Vec<String>>, &Arc<Vec<String>>),
    seconds: f64,
) -> Result<Vec<Tally>> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let handles: Vec<_> = (0..args.concurrency)
        .map(|id| {
            let feed = Feed {
                texts: Arc::clone(texts),
                queries: Arc::clone(queries),
                tasks: args.tasks.clone(),
                next: id * args.batch,
                batch: args.batch,
                stride: args.batch * args.concurrency,
                unique: args.unique,
                tag: format!("{:x}x{id:x}x", started % 0xf_ffff),
                made: 0,
            };
            let (connection, url, model) =
                (connection.clone(), args.url.clone(), args.model.clone());
            let (protocol, in_flight, api) = (args.protocol, args.in_flight, args.api);
            tokio::spawn(async move {
                match (connection, protocol) {
                    (Connection::Http(client), _) => {
                        http_client(client, url, model, api, feed, deadline).await
                    }
                    (Connection::Grpc(client), Protocol::GrpcStream) => {
                        stream_client(client, model, feed, in_flight, deadline).await
                    }
                    (Connection::Grpc(client), _) => {
                        grpc_client(client, model, feed, deadline).await
                    }
                }
            })
        })
        .collect();
    let mut tallies = Vec::with_capacity(handles.len());
    for handle in handles {
        tallies.push(handle.await??);
    }
    Ok(tallies)
}

/// Sends requests made by `request` back to back until `deadline`, timing each; a request's
/// future says whether it succeeded.
async fn back_to_back<F: std::future::Future<Output = bool>>(
    deadline: Instant,
    mut request: impl FnMut() -> F,
) -> Result<Tally> {
    let mut tally = Tally::new()?;
    while Instant::now() < deadline {
        let call = request();
        let sent = Instant::now();
        let ok = call.await;
        tally.record(sent, ok)?;
    }
    Ok(tally)
}

/// One HTTP client: `POST url` (embeddings or rerank, as `api` says) back to back until
/// `deadline`.
async fn http_client(
    client: reqwest::Client,
    url: String,
    model: String,
    api: Api,
    mut feed: Feed,
    deadline: Instant,
) -> Result<Tally> {
    back_to_back(deadline, || {
        let post = client.post(&url).json(&feed.http_body(api, &model));
        async move {
            match post.send().await {
                Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await
}

/// One gRPC client: `Embed` back to back until `deadline`.
async fn grpc_client(
    client: EmbedderClient<Channel>,
    model: String,
    mut feed: Feed,
    deadline: Instant,
) -> Result<Tally> {
    back_to_back(deadline, || {
        let (mut client, request) = (client.clone(), feed.grpc(&model));
        async move { client.embed(request).await.is_ok() }
    })
    .await
}

/// One gRPC client on one `EmbedStream`: keeps `in_flight` requests outstanding, sending the
/// next as each answer arrives, until `deadline`; then collects the answers still outstanding.
async fn stream_client(
    mut client: EmbedderClient<Channel>,
    model: String,
    mut feed: Feed,
    in_flight: usize,
    deadline: Instant,
) -> Result<Tally> {
    let mut tally = Tally::new()?;
    let (outbound, receiver) = tokio::sync::mpsc::channel(in_flight);
    let mut answers = client
        .embed_stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await?
        .into_inner();
    let mut sent_at = HashMap::new();
    let mut next_id = 0u64;
    let mut send = |sent_at: &mut HashMap<u64, Instant>| {
        let message = pb::EmbedStreamRequest {
            id: next_id,
            request: Some(feed.grpc(&model)),
        };
        sent_at.insert(next_id, Instant::now());
        next_id += 1;
        outbound
            .try_send(message)
            .map_err(|_| anyhow::anyhow!("the stream's outbound buffer is full"))
    };
    for _ in 0..in_flight {
        send(&mut sent_at)?;
    }
    while let Some(answer) = answers.next().await {
        let answer = answer?;
        let sent = sent_at
            .remove(&answer.id)
            .context("an answer to an id never sent")?;
        let ok = matches!(
            answer.outcome,
            Some(pb::embed_stream_response::Outcome::Response(_))
        );
        tally.record(sent, ok)?;
        if Instant::now() < deadline {
            send(&mut sent_at)?;
        } else if sent_at.is_empty() {
            break;
        }
    }
    Ok(tally)
}
