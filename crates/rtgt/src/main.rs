//! `rtgt`: the daemon and its command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
#[cfg(test)]
mod reference_docs;

#[derive(Parser)]
#[command(
    name = "rtgt",
    version,
    about = "A user-space SCSI target (iSCSI)",
    after_help = "Object tree commands, as in targetcli:\n  \
        rtgt ls\n  \
        rtgt /backstores/fileio create disk1 /var/lib/rtgt/disk1.img 10G\n  \
        rtgt /iscsi create iqn.2026-11.com.example:disk1\n  \
        rtgt /iscsi/<iqn>/tpg1/luns create disk1\n  \
        rtgt /iscsi/<iqn>/tpg1/acls create <initiator-iqn>\n  \
        rtgt /iscsi/<iqn>/tpg1/acls/<initiator> create mapped_lun=0 tpg_lun=0 write_protect=1\n  \
        rtgt /iscsi/<iqn>/tpg1 set auth userid=NAME password=SECRET\n  \
        rtgt PATH help      (the commands of a node)\n\n\
        Exit codes: 0 done, 1 refused by the daemon, 2 wrong command line, 3 daemon unreachable."
)]
struct Cli {
    /// The daemon's control socket (default: as `rtgt serve`; or $RTGT_SOCKET).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print JSON (the control API's answers) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the target in the foreground.
    ///
    /// Without --config: target iqn.2026-11.org.rtgt:demo on 127.0.0.1:3260
    /// with LUN 0 a 1 GiB RAM disk, open to any initiator.
    Serve {
        /// TOML configuration file; SIGHUP re-reads it and applies what
        /// changed.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen on HOST:PORT instead of the configured portals
        /// (repeatable; port 0 picks a free port).
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_listen)]
        listen: Vec<SocketAddr>,
        /// Runtimes, one thread each, that connections are spread over
        /// (default: one per CPU the process may use; 1 runs everything on
        /// one thread).
        #[arg(long)]
        threads: Option<usize>,
        /// Where state that outlives the process is kept (persistent
        /// reservations with APTPL). Default: /var/lib/rtgt as root, else
        /// $XDG_STATE_HOME/rtgt or ~/.local/state/rtgt.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Ping a connection idle for this many seconds with a NOP-In...
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        nop_interval: u64,
        /// ...and drop it when the ping stays unanswered this long.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        nop_timeout: u64,
        /// Drop a connection that leaves a write without its Data-Out this
        /// long (its commands end; LIO's dataout_timeout).
        #[arg(long, value_name = "SECS", default_value_t = 3)]
        data_out_timeout: u64,
        /// Drop a connection whose initiator does not read its socket this
        /// long.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        send_timeout: u64,
        /// Connections one source address may have open.
        #[arg(long, value_name = "N", default_value_t = 256)]
        max_connections_per_address: usize,
        /// Sessions one initiator name may have.
        #[arg(long, value_name = "N", default_value_t = 64)]
        max_sessions_per_initiator: usize,
        #[command(flatten)]
        login_guard: Box<LoginGuard>,
        /// Memory for command data in flight, all sessions together
        /// (K/M/G); beyond it, new commands wait for data to drain.
        #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
        data_budget: u64,
        /// Keep polling the sockets this many microseconds after traffic
        /// instead of sleeping (lower latency at low queue depth for at
        /// most that much CPU per burst); 0 turns it off.
        #[arg(long, value_name = "MICROSECONDS", default_value_t = 100)]
        busy_poll_us: u64,
        /// The control API's Unix socket (HTTP + JSON; `rtgt` commands use
        /// it). Default: /run/rtgt/rtgt.sock as root, else
        /// $XDG_RUNTIME_DIR/rtgt/rtgt.sock.
        #[arg(long, value_name = "PATH")]
        control: Option<PathBuf>,
        /// Also serve Prometheus metrics at http://ADDR/metrics.
        #[arg(long, value_name = "HOST:PORT")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Check a configuration file and exit.
    Check { config: PathBuf },
    /// Draw the object tree (or the part under PATH).
    Ls { path: Option<String> },
    /// List the sessions: initiator, ISID, TSIH, connections, parameters,
    /// LUNs, counters.
    Sessions,
    /// Save the running configuration to the daemon's --config file.
    Saveconfig,
    /// The running configuration.
    Config {
        #[command(subcommand)]
        what: ConfigCmd,
    },
    /// Show what `apply FILE` would change, object by object.
    Diff { file: PathBuf },
    /// Make the running target match FILE, changing only what differs
    /// (applying the same file twice changes nothing).
    Apply { file: PathBuf },
    /// Read another target's configuration (LIO saveconfig.json, tgt
    /// targets.conf, SCST scst.conf) and print it as an rtgt configuration;
    /// what cannot be carried over is listed on stderr.
    Import {
        #[arg(value_enum)]
        format: rtgt::import::Format,
        file: PathBuf,
        /// Apply it to the running daemon (as `rtgt apply`) instead of
        /// printing it.
        #[arg(long)]
        apply: bool,
    },
    /// An interactive shell on the object tree (also: `rtgt` alone on a
    /// terminal).
    Shell,
    /// A path of the tree and a command: `rtgt /iscsi create IQN`.
    #[command(external_subcommand)]
    Path(Vec<String>),
}

/// Bounds on the login phase and pacing of failed authentication
/// (SECURITY.md explains each).
#[derive(clap::Args)]
struct LoginGuard {
    /// Connections in the login phase at once, in all; more get 03/02.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_logins: usize,
    /// ...from one source network (IPv4 /24, IPv6 /64).
    #[arg(long, value_name = "N", default_value_t = 128)]
    max_logins_per_network: usize,
    /// ...for one initiator name.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_logins_per_initiator: usize,
    /// Seconds from connect to the end of authentication (security stage).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    security_timeout: u64,
    /// Seconds from connect to full feature phase.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    login_timeout: u64,
    /// After a failed authentication, the next from the same (initiator
    /// name, source) waits this long, doubling with each failure...
    #[arg(long, value_name = "MS", default_value_t = 100)]
    auth_fail_delay_ms: u64,
    /// ...up to this.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    auth_fail_delay_max_ms: u64,
    /// Refuse an (initiator name, source) outright after this many failures
    /// in a row (0: never)...
    #[arg(long, value_name = "N", default_value_t = 0)]
    auth_lockout_after: u32,
    /// ...for this long.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    auth_lockout_secs: u64,
}

impl LoginGuard {
    fn apply(&self, s: &mut rtgt_iscsi::server::Settings) {
        use std::time::Duration;
        s.login_limits = rtgt_iscsi::gate::LoginLimits {
            global: self.max_logins.max(1),
            per_network: self.max_logins_per_network.max(1),
            per_initiator: self.max_logins_per_initiator.max(1),
        };
        s.login_timeout = Duration::from_secs(self.login_timeout.max(1));
        s.security_timeout =
            Duration::from_secs(self.security_timeout.clamp(1, self.login_timeout.max(1)));
        s.pacing = rtgt_iscsi::pacing::PacingConfig {
            base: Duration::from_millis(self.auth_fail_delay_ms),
            max: Duration::from_millis(self.auth_fail_delay_max_ms),
            lockout_after: self.auth_lockout_after,
            lockout: Duration::from_secs(self.auth_lockout_secs),
            ..Default::default()
        };
    }
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print it in the file format `rtgt serve --config` reads.
    Dump {
        /// Include inline CHAP secrets.
        #[arg(long)]
        secrets: bool,
    },
}

/// Every connection costs a descriptor, and the login-phase bounds
/// (1024 by default) assume the daemon can hold them: raise the soft limit
/// on open files to the hard one, as a server with many clients does
/// (systemd and most shells start processes at a soft limit of 1024).
fn raise_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct,
    // which lives on this stack frame for both calls.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max && {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0
        }
    };
    if !raised && l.rlim_cur < 4096 {
        tracing::warn!(
            "open files limited to {}: connections beyond it are refused at accept",
            l.rlim_cur
        );
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    rtgt::config::parse_size(s)
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    rtgt::config::parse_portal(s)
}

/// Run a client command against the daemon.
fn client(cli_socket: Option<PathBuf>, json: bool, cmd: Option<Cmd>) -> ExitCode {
    use rtgt::cli::{self, CliError};
    use std::io::IsTerminal;
    let socket = cli_socket.unwrap_or_else(cli::default_socket);
    let client = match cli::client::Client::new(&socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rtgt: {e}");
            return ExitCode::FAILURE;
        }
    };
    let color = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let mut ctx = cli::Ctx {
        client,
        json,
        color,
    };
    let words = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let result: Result<String, CliError> = match cmd {
        None if std::io::stdin().is_terminal() => cli::shell::run(&ctx).map(|_| String::new()),
        None => Err(CliError::Usage(
            "no command: `rtgt --help` lists them (`rtgt shell` on a terminal)".into(),
        )),
        Some(Cmd::Shell) => cli::shell::run(&ctx).map(|_| String::new()),
        Some(Cmd::Ls { path }) => {
            let mut w = words(&["ls"]);
            w.extend(path);
            cli::run(&ctx, "/", &w).map(|(o, _)| o)
        }
        Some(Cmd::Sessions) => cli::run(&ctx, "/", &words(&["sessions"])).map(|(o, _)| o),
        Some(Cmd::Saveconfig) => cli::run(&ctx, "/", &words(&["saveconfig"])).map(|(o, _)| o),
        Some(Cmd::Config {
            what: ConfigCmd::Dump { secrets },
        }) => cli::dump(&ctx, secrets),
        Some(Cmd::Diff { file }) => cli::apply(&ctx, &file, false),
        Some(Cmd::Apply { file }) => cli::apply(&ctx, &file, true),
        Some(Cmd::Path(mut w)) => {
            // Global flags may come after the path words.
            if let Some(i) = w.iter().position(|a| a == "--json") {
                w.remove(i);
                ctx.json = true;
            }
            cli::run(&ctx, "/", &w).map(|(o, _)| o)
        }
        Some(Cmd::Serve { .. } | Cmd::Check { .. } | Cmd::Import { .. }) => {
            Err(CliError::Usage("not a client command".into()))
        }
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rtgt: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `rtgt import`: print the configuration (exit 0), or apply it; a file
/// that cannot be read is exit 2 with where and why.
fn import(
    socket: Option<PathBuf>,
    json: bool,
    format: rtgt::import::Format,
    file: &std::path::Path,
    apply: bool,
) -> ExitCode {
    let imported = match rtgt::import::import(format, file) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("rtgt: {e}");
            return ExitCode::from(2);
        }
    };
    for n in &imported.notes {
        eprintln!("rtgt import: not carried over as it was: {n}");
    }
    let text = imported.doc.to_toml(true);
    if !apply {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    // Through a private file, as `rtgt apply FILE` takes it: it may hold
    // CHAP secrets.
    let tmp = match tempfile::Builder::new()
        .prefix("rtgt-import-")
        .suffix(".toml")
        .tempfile()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rtgt: cannot write the imported configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::write(tmp.path(), &text) {
        eprintln!("rtgt: cannot write the imported configuration: {e}");
        return ExitCode::FAILURE;
    }
    client(
        socket,
        json,
        Some(Cmd::Apply {
            file: tmp.path().to_path_buf(),
        }),
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(Cmd::Import {
        format,
        file,
        apply,
    }) = &cli.command
    {
        return import(cli.socket.clone(), cli.json, *format, file, *apply);
    }
    let command = match cli.command {
        Some(c @ (Cmd::Serve { .. } | Cmd::Check { .. })) => c,
        other => return client(cli.socket, cli.json, other),
    };
    match command {
        Cmd::Check { config } => match rtgt::config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rtgt: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Serve {
            config,
            listen,
            threads,
            state_dir,
            nop_interval,
            nop_timeout,
            data_out_timeout,
            send_timeout,
            max_connections_per_address,
            max_sessions_per_initiator,
            login_guard,
            data_budget,
            busy_poll_us,
            control,
            metrics_listen,
        } => {
            raise_fd_limit();
            let state_dir = state_dir.or_else(rtgt::state::default_dir);
            let cfg = match &config {
                Some(path) => match rtgt::config::load(path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("rtgt: {e}");
                        return ExitCode::from(2);
                    }
                },
                None => rtgt::config::demo(),
            };
            // One runtime per CPU (see rtgt_iscsi::shards): connections
            // are spread over them and stay on theirs. This thread's own
            // runtime accepts connections and runs the control work; with
            // one CPU it runs the connections too, with no hand-off.
            let cpus = threads.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("rtgt: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut settings = rtgt_iscsi::server::Settings {
                nop_interval: std::time::Duration::from_secs(nop_interval.max(1)),
                nop_timeout: std::time::Duration::from_secs(nop_timeout.max(1)),
                data_out_timeout: std::time::Duration::from_secs(data_out_timeout.max(1)),
                send_timeout: std::time::Duration::from_secs(send_timeout.max(1)),
                max_connections_per_address: max_connections_per_address.max(1),
                max_sessions_per_initiator: max_sessions_per_initiator.max(1),
                data_budget,
                shards: if cpus > 1 { cpus } else { 0 },
                busy_poll: std::time::Duration::from_micros(busy_poll_us),
                ..Default::default()
            };
            login_guard.apply(&mut settings);
            match rt.block_on(rtgt::serve::serve(
                cfg,
                config,
                listen,
                state_dir,
                settings,
                rtgt::control::Options {
                    socket: control,
                    metrics_listen,
                },
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rtgt: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => ExitCode::FAILURE,
    }
}
