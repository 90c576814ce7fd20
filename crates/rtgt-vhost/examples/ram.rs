//! Development aid until `[[vhost]]` is in the daemon's configuration:
//! serve one RAM LU (LUN 0, SIZE MiB, default 256) over vhost-user-scsi on
//! SOCKET, for QEMU's `-device vhost-user-scsi-pci`.
//!
//!     cargo run --release -p rtgt-vhost --example ram -- /tmp/vhost.sock 256

use std::sync::atomic::AtomicBool;

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
    let stop = AtomicBool::new(false);
    eprintln!("serving a {mib} MiB RAM LU on {socket}");
    rtgt_vhost::backend::serve_socket(
        std::path::Path::new(&socket),
        2,
        rt.handle().clone(),
        || {
            Some(nexus_for(
                "naa.5001405000000001,i,0x000000000001",
                &[(0, &lu, false)],
            ))
        },
        &stop,
    )
}
