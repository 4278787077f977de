//! Two replicas behind a real nginx (Debian's nginx-light, with `deploy/nginx/nginx.conf.template`
//! as shipped) under 20 concurrent clients: traffic spreads over both; one replica drains on
//! SIGTERM and is started again, later the other is killed with SIGKILL and started again; the
//! clients see no failed request. Also: `/ready` says `draining` during the drain delay.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use embedrt_proto::v1 as pb;
use serde_json::json;

use crate::common::process::{free_port, spawn_tied};
use crate::common::{
    alone, cosine, repo_root, under_load, Exit, LoadOutcome, Model, Server, TempDir,
};

/// One replica's ports, so it can be started again where it was.
struct Replica {
    ports: (u16, u16),
}

impl Replica {
    fn new() -> Self {
        Self {
            ports: (free_port(), free_port()),
        }
    }

    /// Starts (or starts again) the replica: all-MiniLM-L6-v2 on onnx, draining for a second on
    /// SIGTERM.
    fn start(&self) -> Server {
        Server::builder()
            .ports(self.ports.0, self.ports.1)
            .server("drain_delay_ms", 1000)
            .model(Model::minilm("minilm").on("onnx"))
            .start()
    }

    /// Successful requests this replica's current process counted.
    fn served(server: &Server) -> f64 {
        server.metric(
            "embedrt_requests_total",
            &[("model", "minilm"), ("status", "ok")],
        )
    }
}

/// nginx with the shipped template in front of `replicas`, listening on free ports.
struct Nginx {
    child: Child,
    url: String,
    grpc_url: String,
    dir: TempDir,
}

impl Nginx {
    fn start(replicas: &[&Replica]) -> Self {
        let dir = TempDir::new("nginx");
        let (http, grpc) = (free_port(), free_port());
        let servers = |port: fn(&Replica) -> u16| {
            replicas
                .iter()
                .map(|r| format!("        server 127.0.0.1:{} max_fails=0;", port(r)))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let template =
            std::fs::read_to_string(repo_root().join("deploy/nginx/nginx.conf.template")).unwrap();
        let config = template
            .replace("@PREFIX@", &dir.path().display().to_string())
            .replace("@HTTP_SERVERS@", &servers(|r| r.ports.0))
            .replace("@GRPC_SERVERS@", &servers(|r| r.ports.1))
            .replace("@HTTP_LISTEN@", &format!("127.0.0.1:{http}"))
            .replace("@GRPC_LISTEN@", &format!("127.0.0.1:{grpc}"));
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config).unwrap();
        let mut command = Command::new("nginx");
        command
            // One process (no workers), so killing it leaves nothing behind: nginx's workers
            // outlive a SIGKILLed master.
            .args([
                "-e",
                "stderr",
                "-g",
                "daemon off; master_process off;",
                "-p",
            ])
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("error.log")).unwrap());
        let child = spawn_tied(command)
            .expect("nginx is installed (scripts/setup.sh installs nginx-light)");
        let url = format!("http://127.0.0.1:{http}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::blocking::get(format!("{url}/health")).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            url,
            grpc_url: format!("http://127.0.0.1:{grpc}"),
            dir,
        }
    }
}

/// The embedding of `text` by model `minilm`, asked over gRPC at `url`.
fn grpc_embedding(url: &str, text: &str) -> Vec<f32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = pb::embedder_client::EmbedderClient::connect(url.to_string())
            .await
            .unwrap();
        let request = pb::EmbedRequest {
            model: "minilm".into(),
            texts: vec![text.to_string()],
            ..Default::default()
        };
        let answer = client.embed(request).await.unwrap().into_inner();
        answer.embeddings[0].values.clone()
    })
}

impl Nginx {
    /// The last lines nginx logged (its errors and warnings).
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn replicas_behind_nginx_survive_a_drain_and_a_crash_without_a_failed_request() {
    let _alone = alone(); // 20 clients, and traffic shares measured
    let (a, b) = (Replica::new(), Replica::new());
    let mut first = a.start();
    let mut second = b.start();
    let nginx = Nginx::start(&[&a, &b]);

    // gRPC goes through nginx too (grpc_pass), with the same answer as a replica gives directly.
    let proxied = grpc_embedding(&nginx.grpc_url, "through nginx");
    let direct = grpc_embedding(&first.grpc_url, "through nginx");
    assert!(cosine(&proxied, &direct) > 0.99999);

    let body = |client, round| json!({ "model": "minilm", "input": format!("client {client} request {round}") });
    let ((), LoadOutcome { sent, failures }) = under_load(&nginx.url, 20, body, || {
        // Both replicas take traffic while both are up.
        std::thread::sleep(Duration::from_secs(3));
        let (on_first, on_second) = (Replica::served(&first), Replica::served(&second));
        assert!(
            on_first > 20.0 && on_second > 20.0,
            "traffic spreads: {on_first} and {on_second} requests"
        );

        // Graceful: SIGTERM, /ready turns `draining` (once the signal is handled, which a loaded
        // machine may delay) while it still serves, then it exits.
        first.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready = loop {
            let ready = reqwest::blocking::get(format!("{}/ready", first.url)).unwrap();
            if ready.status() != 200 || Instant::now() > deadline {
                break ready;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(ready.status(), 503);
        assert_eq!(
            ready.json::<serde_json::Value>().unwrap()["status"],
            "draining"
        );
        let Exit { code, log } = first.wait_exit(Duration::from_secs(30));
        assert_eq!(code, Some(0), "{log}");
        first = a.start();
        std::thread::sleep(Duration::from_secs(2));

        // A crash: SIGKILL in the middle of the load, then a restart.
        second.signal(libc::SIGKILL);
        std::thread::sleep(Duration::from_secs(1));
        second = b.start();
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            Replica::served(&first) > 0.0,
            "the restarted replica serves again"
        );
    });
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}\nnginx said:\n{}",
        failures.len(),
        &failures[..failures.len().min(3)],
        nginx.log_tail()
    );
    assert!(sent > 200, "{sent} requests");
    drop(second);
}
