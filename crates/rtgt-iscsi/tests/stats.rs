//! Statistics through a real server on loopback: a blocking initiator
//! logs in (and fails to, in counted ways), runs commands, and
//! `Server::stats` must show the session, its map and parameters, and
//! counters per LU, per session and per target port that match what was
//! sent; after the session ends the totals stay.

#[allow(dead_code)]
#[path = "../../rtgt/tests/common/iscsi_login.rs"]
mod iscsi_login;
#[allow(dead_code)]
#[path = "../../rtgt/tests/common/scsi_client.rs"]
mod scsi_client;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iscsi_login::{login, LoginOptions};
use rtgt_backstore::RamDisk;
use rtgt_iscsi::server::{bind, Server, Settings};
use rtgt_iscsi::stats::{IoTotals, ServerStats};
use rtgt_iscsi::target::{target_port, PortalGroup, Target, Targets};
use rtgt_scsi::access::{LunMapping, NodeAcl, PortGroup, PortGroupConfig, TpgLun, TpgMode};
use rtgt_scsi::{LogicalUnit, LuConfig};
use scsi_client::Session;

const TARGET: &str = "iqn.2026-11.org.rtgt:stats";
const ALLOWED: &str = "iqn.2026-11.org.rtgt:allowed";

fn lu(name: &str) -> Arc<LogicalUnit> {
    LogicalUnit::new(LuConfig::new(name, Arc::new(RamDisk::new(1 << 20, 512))))
}

/// A server on an ephemeral loopback port: one target, TPG 1 in ACL mode,
/// LUN 0 -> ram0 read-write and LUN 1 -> ram1 read-only for `ALLOWED`;
/// ram2 is in the group but mapped to nobody.
fn start() -> (Arc<Server>, u16, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(bind("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let luns: BTreeMap<u64, TpgLun> = [(0, "ram0"), (1, "ram1"), (2, "ram2")]
        .into_iter()
        .map(|(n, name)| {
            (
                n,
                TpgLun {
                    lu: lu(name),
                    read_only: false,
                },
            )
        })
        .collect();
    let acl = NodeAcl {
        auth: None,
        luns: [
            (
                0,
                LunMapping {
                    tpg_lun: 0,
                    read_only: false,
                },
            ),
            (
                1,
                LunMapping {
                    tpg_lun: 1,
                    read_only: true,
                },
            ),
        ]
        .into_iter()
        .collect(),
    };
    let config = PortGroupConfig {
        mode: TpgMode::Acl,
        auth: None,
        luns,
        acls: [(ALLOWED.to_string(), acl)].into_iter().collect(),
    };
    let group = PortGroup::new(
        target_port(
            TARGET,
            1,
            1,
            rtgt_scsi::alua::TargetPortGroup::new(
                1,
                rtgt_scsi::alua::AccessState::ActiveOptimized,
                false,
            ),
        ),
        config,
    );
    let targets = Targets {
        targets: vec![Target {
            name: TARGET.into(),
            alias: None,
            groups: vec![PortalGroup {
                tag: 1,
                portals: vec![addr],
                group,
            }],
        }],
        ..Targets::default()
    };
    let server = Server::new(targets, Settings::default()).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let s = server.clone();
    rt.spawn(async move {
        let _keep = _tx;
        s.serve(listener, rx).await
    });
    (server, addr.port(), rt)
}

fn opts(initiator: &str, target: &str, isid_tail: u8) -> LoginOptions {
    LoginOptions {
        initiator: initiator.into(),
        target: Some(target.into()),
        chap: None,
        isid: [0x40, 0, 0x01, 0x37, 0, isid_tail],
    }
}

fn lu_totals(s: &ServerStats, name: &str) -> IoTotals {
    s.lus
        .iter()
        .find(|l| l.lu == name)
        .unwrap_or_else(|| panic!("no LU {name} in {:?}", s.lus))
        .totals
        .clone()
}

/// `after - before`, counter by counter.
fn delta(after: &IoTotals, before: &IoTotals) -> IoTotals {
    let mut d = IoTotals {
        commands: after.commands - before.commands,
        read_commands: after.read_commands - before.read_commands,
        write_commands: after.write_commands - before.write_commands,
        read_bytes: after.read_bytes - before.read_bytes,
        written_bytes: after.written_bytes - before.written_bytes,
        errors: after.errors - before.errors,
        ..IoTotals::default()
    };
    for i in 0..d.latency.buckets.len() {
        d.latency.buckets[i] = after.latency.buckets[i] - before.latency.buckets[i];
    }
    d.latency.sum_ns = after.latency.sum_ns - before.latency.sum_ns;
    d
}

fn rw10(op: u8, lba: u8, blocks: u8) -> [u8; 10] {
    [op, 0, 0, 0, 0, lba, 0, 0, blocks, 0]
}

#[test]
fn stats_follow_logins_and_commands() {
    let (server, port, _rt) = start();

    // Failed logins, each counted under its reason.
    let r = login(port, &opts("iqn.2026-11.org.rtgt:stranger", TARGET, 1)).unwrap();
    assert_eq!((r.class, r.detail), (2, 2), "no ACL: authorization failure");
    let r = login(port, &opts(ALLOWED, "iqn.2026-11.org.rtgt:nonesuch", 2)).unwrap();
    assert_eq!((r.class, r.detail), (2, 3));

    let r = login(port, &opts(ALLOWED, TARGET, 3)).unwrap();
    assert!(r.succeeded());
    let stream = r.stream.unwrap();
    let client_addr = stream.local_addr().unwrap();
    let mut s = Session::new(stream);
    s.clear_unit_attentions(0);
    s.clear_unit_attentions(1);

    let before = server.stats();
    assert_eq!(before.session_count, 1);
    assert_eq!(before.logins.succeeded, 1);
    assert_eq!(before.logins.failures["authorization_failed"], 1);
    assert_eq!(before.logins.failures["target_not_found"], 1);
    assert_eq!(before.logins.failures["authentication_failed"], 0);
    assert_eq!(before.logins.failures.values().sum::<u64>(), 2);

    // The session view.
    let v = &before.sessions[0];
    assert_eq!(v.info.initiator, ALLOWED);
    assert_eq!(v.info.isid, "400001370003");
    assert_ne!(v.info.tsih, 0);
    assert_eq!(v.info.session_type, "Normal");
    assert_eq!((v.info.target.as_str(), v.info.tpg), (TARGET, 1));
    assert_eq!(v.info.connections.len(), 1);
    assert_eq!(v.info.connections[0].peer, client_addr);
    assert_eq!(v.info.connections[0].local.port(), port);
    let p = &v.info.params;
    assert_eq!(p.initiator_max_recv_data_segment_length, 262_144);
    assert_eq!(
        p.max_recv_data_segment_length,
        Settings::default().max_recv_dsl
    );
    assert_eq!(p.header_digest, "None");
    assert_eq!(p.data_digest, "None");
    assert_eq!(p.error_recovery_level, 0);
    assert!(p.max_burst_length >= p.first_burst_length);
    assert_eq!(p.auth_method, "None");
    let luns: Vec<_> = v
        .luns
        .iter()
        .map(|l| (l.lun, l.lu.as_str(), l.read_only))
        .collect();
    assert_eq!(luns, [(0, "ram0", false), (1, "ram1", true)]);
    // Every configured LU and port is listed, used or not.
    assert_eq!(lu_totals(&before, "ram2"), IoTotals::default());
    assert_eq!(before.ports.len(), 1);
    assert_eq!(before.ports[0].sessions, 1);

    // A write of one block and a read of two on LUN 0.
    let w = s.command(0, &rw10(0x2a, 0, 1), &[0xab; 512], 0).unwrap();
    assert_eq!(w.status, 0);
    let rd = s.command(0, &rw10(0x28, 0, 2), &[], 1024).unwrap();
    assert_eq!((rd.status, rd.data.len()), (0, 1024));
    // A write to the read-only LUN fails; an INQUIRY there does not.
    let w = s.command(1, &rw10(0x2a, 0, 1), &[0xcd; 512], 0).unwrap();
    assert_eq!(w.status, 2, "write to a read-only LUN: CHECK CONDITION");
    let inq = s.command(1, &[0x12, 0, 0, 0, 36, 0], &[], 36).unwrap();
    assert_eq!((inq.status, inq.data.len()), (0, 36));
    // A LUN that is not mapped: an error of the session, no LU's.
    let bad = s.command(7, &[0, 0, 0, 0, 0, 0], &[], 0).unwrap();
    assert_eq!(bad.status, 2);

    let after = server.stats();
    let ram0 = delta(&lu_totals(&after, "ram0"), &lu_totals(&before, "ram0"));
    assert_eq!(ram0.commands, 2);
    assert_eq!((ram0.read_commands, ram0.write_commands), (1, 1));
    assert_eq!((ram0.read_bytes, ram0.written_bytes), (1024, 512));
    assert_eq!(ram0.errors, 0);
    assert_eq!(ram0.latency.count(), 2);
    assert!(ram0.latency.sum_ns > 0);
    let ram1 = delta(&lu_totals(&after, "ram1"), &lu_totals(&before, "ram1"));
    assert_eq!(ram1.commands, 2);
    assert_eq!((ram1.read_commands, ram1.write_commands), (0, 1));
    assert_eq!((ram1.read_bytes, ram1.written_bytes), (36, 0));
    assert_eq!(ram1.errors, 1);
    assert_eq!(lu_totals(&after, "ram2"), IoTotals::default());
    let port_d = delta(&after.ports[0].totals, &before.ports[0].totals);
    assert_eq!(port_d.commands, 5);
    assert_eq!(port_d.errors, 2);
    assert_eq!(port_d.read_bytes, 1024 + 36);
    assert_eq!(port_d.written_bytes, 512);
    let sess_d = delta(&after.sessions[0].totals, &before.sessions[0].totals);
    assert_eq!(sess_d, port_d);
    let per_lu: Vec<_> = after.sessions[0]
        .lus
        .iter()
        .map(|l| l.lu.as_str())
        .collect();
    assert_eq!(per_lu, ["ram0", "ram1"]);

    // The session ends: its counts stay in the LU and port totals.
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().session_count > 0 {
        assert!(Instant::now() < deadline, "session did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ended = server.stats();
    assert!(ended.sessions.is_empty());
    assert_eq!(ended.ports[0].sessions, 0);
    assert_eq!(ended.ports[0].totals, after.ports[0].totals);
    assert_eq!(ended.lus, after.lus);
    let json_ok = format!("{:?}", ended.logins);
    assert!(json_ok.contains("succeeded: 1"));
}
