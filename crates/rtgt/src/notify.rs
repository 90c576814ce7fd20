//! Service-manager notifications (`sd_notify(3)`): tell systemd when the
//! daemon is ready, reloading or stopping, and a one-line status.
//!
//! Each function sends one datagram to the socket named by `$NOTIFY_SOCKET`
//! (a path, or an abstract socket written `@name`) and does nothing when the
//! variable is unset, so `rtgt serve` behaves the same outside systemd.
//! Failures are logged at debug level and otherwise ignored: a service
//! manager that went away must not stop the target.
//!
//! Written on `std` rather than a crate: the datagram is a few lines, and
//! the `sd-notify` crate does not reach abstract sockets.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Startup is complete: every portal listens (`READY=1`). Also sent after a
/// reload has been applied or refused.
pub fn ready() {
    notify("READY=1\n");
}

/// A configuration reload (SIGHUP) begins (`RELOADING=1` with the
/// `MONOTONIC_USEC` that `Type=notify-reload` in systemd 253 and later
/// requires; older managers ignore it). Follow with [`ready`] when done.
pub fn reloading() {
    notify(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\n",
        monotonic_usec()
    ));
}

/// Shutdown begins (`STOPPING=1`).
pub fn stopping() {
    notify("STOPPING=1\n");
}

/// A one-line, human-readable status shown by `systemctl status`
/// (`STATUS=...`; line breaks become spaces).
pub fn status(msg: &str) {
    notify(&status_message(msg));
}

fn status_message(msg: &str) -> String {
    let line: String = msg
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("STATUS={line}\n")
}

/// Sends `state` (newline-separated `KEY=VALUE` assignments) to
/// `$NOTIFY_SOCKET`, if set.
fn notify(state: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    if let Err(e) = send_to(&socket, state) {
        tracing::debug!(socket = ?socket, error = %e, "sd_notify failed");
    }
}

/// Sends one datagram to the notification socket `socket`: a filesystem
/// path, or an abstract socket when it starts with `@`.
fn send_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let addr = socket_addr(socket)?;
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification datagram truncated",
        ));
    }
    Ok(())
}

fn socket_addr(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..])
        }
        Some(b'/') => SocketAddr::from_pathname(socket),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an abstract socket (@name)",
        )),
    }
}

/// `CLOCK_MONOTONIC` in microseconds, as `MONOTONIC_USEC` wants it.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("no notification datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// The only test that touches `NOTIFY_SOCKET` (the environment is shared
    /// by every test thread): each call through the variable, then unset.
    #[test]
    fn notifications_reach_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();

        std::env::set_var(NOTIFY_SOCKET, &path);
        ready();
        assert_eq!(recv(&listener), "READY=1\n");

        let before = monotonic_usec();
        reloading();
        let msg = recv(&listener);
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .expect("MONOTONIC_USEC missing")
            .parse()
            .unwrap();
        assert!(usec >= before && usec <= monotonic_usec(), "{msg}");

        status("serving 2 portals\nREADY=1");
        assert_eq!(recv(&listener), "STATUS=serving 2 portals READY=1\n");

        stopping();
        assert_eq!(recv(&listener), "STOPPING=1\n");

        // Unset: nothing is sent, nothing fails.
        std::env::remove_var(NOTIFY_SOCKET);
        ready();
        listener.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            listener.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("rtgt-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(OsStr::new(&format!("@{name}")), "READY=1\n").unwrap();
        assert_eq!(recv(&listener), "READY=1\n");
    }

    #[test]
    fn bad_socket_names_are_errors() {
        assert!(send_to(OsStr::new("relative.sock"), "READY=1\n").is_err());
        assert!(send_to(OsStr::new(""), "READY=1\n").is_err());
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nobody-listens");
        assert!(send_to(missing.as_os_str(), "READY=1\n").is_err());
    }
}
