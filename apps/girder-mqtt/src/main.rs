//! `girder-mqtt`: the broker, from embedded defaults, a TOML file and flags over both;
//! `girder-mqtt bench` measures it beside Mosquitto and rumqttd (see `bench/`).

mod bench;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use girder_mqtt::broker::Broker;
use girder_mqtt::config::Config;

/// An MQTT 3.1.1 and 5.0 broker built on Girder.
#[derive(Parser, Debug)]
#[command(name = "girder-mqtt", version)]
struct Args {
    /// What to do instead of running the broker.
    #[command(subcommand)]
    command: Option<Command>,
    /// A TOML file of settings (the flags below override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The MQTT TCP listener (default 0.0.0.0:1883).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// A TLS listener (needs --tls-cert and --tls-key).
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// The TLS certificate chain (PEM).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// A WebSocket listener (for browsers).
    #[arg(long)]
    ws_listen: Option<SocketAddr>,
    /// The ops HTTP listener (default 127.0.0.1:8080).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Where sessions and retained messages are kept (default ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Let clients without a user name connect.
    #[arg(long)]
    allow_anonymous: bool,
    /// Users and password hashes, in mosquitto_passwd's format.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Topic permissions, in Mosquitto's acl_file format.
    #[arg(long)]
    acl_file: Option<PathBuf>,
    /// The largest keep alive a client may ask for, in seconds.
    #[arg(long)]
    max_keepalive: Option<u16>,
    /// The largest packet a client may send, in bytes.
    #[arg(long)]
    max_packet_size: Option<usize>,
    /// Clients connected at once.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Scheduler threads for the broker's processes (Girder's schedulers, like the BEAM's
    /// `+S`; default one per core); 0 runs them as tasks of a tokio runtime.
    #[arg(long)]
    schedulers: Option<usize>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Measures this broker beside Mosquitto and rumqttd (each started as a child process).
    Bench(bench::BenchArgs),
}

impl Args {
    fn config(self) -> Result<Config, String> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.tls_listen {
            c.tls_listen = Some(v);
        }
        if let Some(v) = self.tls_cert {
            c.tls_cert = Some(v);
        }
        if let Some(v) = self.tls_key {
            c.tls_key = Some(v);
        }
        if let Some(v) = self.ws_listen {
            c.ws_listen = Some(v);
        }
        if let Some(v) = self.http {
            c.http = Some(v);
        }
        if let Some(v) = self.data_dir {
            c.data_dir = Some(v);
        }
        if self.allow_anonymous {
            c.allow_anonymous = Some(true);
        }
        if let Some(v) = self.password_file {
            c.password_file = Some(v);
        }
        if let Some(v) = self.acl_file {
            c.acl_file = Some(v);
        }
        if let Some(v) = self.max_keepalive {
            c.max_keepalive = v;
        }
        if let Some(v) = self.max_packet_size {
            c.max_packet_size = v;
        }
        if let Some(v) = self.max_connections {
            c.max_connections = v;
        }
        if let Some(v) = self.schedulers {
            c.schedulers = Some(v);
        }
        Ok(c)
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = Args::parse();
    if let Some(Command::Bench(b)) = args.command.take() {
        std::process::exit(bench::main(b));
    }
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("girder-mqtt: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // Kept for the life of the broker: the last handle dropped stops the schedulers.
    let pool = girder::Schedulers::from_setting(config.schedulers);
    let code = rt.block_on(async move {
        // Caught from here on: a SIGTERM as soon as the broker says it listens is a drain.
        let stop = girder::application::shutdown_signal();
        let node = girder::Node::builder("girder-mqtt")
            .schedulers_or_tasks(pool.clone())
            .build();
        // The node's ops endpoint: metrics, alarms, the supervision tree, the dashboard.
        let ops = match config.http {
            Some(addr) => match girder_ops::Ops::builder(&node).serve(addr).await {
                Ok(ops) => {
                    println!("girder-mqtt ops on http://{}/", ops.local_addr());
                    Some(ops)
                }
                Err(e) => {
                    eprintln!("girder-mqtt: cannot serve ops on {addr}: {e}");
                    return 1;
                }
            },
            None => None,
        };
        let alarms = ops.as_ref().map(|o| o.alarms().clone());
        let broker = match Broker::start_with(&node, config, alarms).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("girder-mqtt: {e}");
                return 1;
            }
        };
        // Connects slow down while the node falls behind (scheduling lag past 100 ms).
        let _governor = ops.as_ref().map(|o| {
            o.govern(
                &node,
                "mqtt_admission",
                broker.admission(),
                std::time::Duration::from_millis(100),
            )
        });
        // The tests and scripts read this line to learn the port.
        println!("girder-mqtt listening on {}", broker.local_addr());
        stop.await;
        tracing::info!("shutting down");
        broker.stop().await;
        drop(ops);
        0
    });
    std::process::exit(code);
}
