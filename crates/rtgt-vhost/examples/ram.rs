//! Development aid: serve one RAM LU (LUN 0, SIZE MiB, default 256) over
//! vhost-user-scsi on SOCKET, for QEMU's `-device vhost-user-scsi-pci`,
//! without the daemon's configuration (`[[vhost]]` does this in `rtgt`).
//!
//!     cargo run --release -p rtgt-vhost --example ram -- /tmp/vhost.sock 256

use rtgt_scsi::fuzz_entry::{nexus_for, ram_lu};

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let socket = args.next().unwrap_or_else(|| "/tmp/rtgt-vhost.sock".into());
    let mib: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(256);
    let rt = tokio::runtime::Runtime::new()?;
    let lu = ram_lu(mib << 20, 512);
    eprintln!("serving a {mib} MiB RAM LU on {socket}");
    let _server = rtgt_vhost::SocketServer::start(
        std::path::Path::new(&socket),
        2,
        rtgt_vhost::Runtimes::new(Vec::new(), rt.handle().clone()),
        Box::new(move || Some(nexus_for("naa.5001405000000001", &[(0, &lu, false)]))),
        false,
    )?;
    loop {
        std::thread::park();
    }
}
