//! ALUA through the command path: the state check generated from the
//! opcode table and held against SPC-4's lists, REPORT and SET TARGET PORT
//! GROUPS, unit attentions, transitions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::api::TargetPort;
use crate::core::opcodes::OPS;
use crate::core::sense::Sense;
use crate::testutil::*;

fn port(rel: u16, group: &Arc<TargetPortGroup>) -> Arc<TargetPort> {
    Arc::new(TargetPort {
        name: format!("iqn.2026-12.org.rtgt:alua,t,0x{rel:04x}"),
        target_name: "iqn.2026-12.org.rtgt:alua".into(),
        relative_port_id: rel,
        group: group.clone(),
    })
}

/// A CDB for a table entry: its opcode and service action, zero fields.
fn cdb_of(op: &crate::core::opcodes::OpDesc) -> Vec<u8> {
    let mut c = vec![0u8; op.usage.len()];
    c[0] = op.opcode;
    if let Some(sa) = op.sa {
        c[1] = sa;
    }
    c
}

/// Whether `prepare` refused the command for the ALUA state `s`.
fn refused_for(t: &Fixture, cdb: &[u8], s: AccessState) -> bool {
    match t.nexus.prepare(cmd(0, cdb)) {
        Ok(_) => false,
        Err(r) => r
            .sense
            .as_ref()
            .and_then(|b| Sense::decode(b))
            .is_some_and(|x| x == s.refusal()),
    }
}

/// SPC-4 5.15.2.4.4-5.15.2.5 (and SBC-4 for READ CAPACITY in Standby):
/// the commands of ours each state lets through, written out by hand.
fn spc4_allowed(s: AccessState) -> BTreeSet<(u8, Option<u8>)> {
    let always = [(0x12, None), (0xa0, None), (0x03, None)];
    let mut v: BTreeSet<(u8, Option<u8>)> = always.into_iter().collect();
    let rtpg = (0xa3, Some(0x0a));
    let stpg = (0xa4, Some(0x0a));
    match s {
        AccessState::Standby => {
            v.extend([(0x15, None), (0x55, None), (0x1a, None), (0x5a, None)]);
            v.extend([(0x25, None), (0x9e, Some(0x10))]);
            v.extend((0..4).map(|sa| (0x5e, Some(sa))));
            v.extend((0..8).map(|sa| (0x5f, Some(sa))));
            v.extend([rtpg, stpg]);
        }
        AccessState::Unavailable => v.extend([rtpg, stpg]),
        AccessState::Transitioning => v.extend([rtpg]),
        AccessState::Offline => {}
        _ => unreachable!(),
    }
    v
}

#[tokio::test]
async fn every_opcode_in_every_state() {
    let g = TargetPortGroup::new(1, AccessState::ActiveOptimized, false);
    let base = Fixture::new(64, 512);
    let t = base.through(&port(1, &g), "iqn.test:a,i,0x1");
    t.clear_ua().await;
    for s in AccessState::ALL {
        // Straight into the state (Transitioning too, which no one can
        // ask for).
        g.force(s);
        assert_eq!(g.state(), s);
        let mut admitted = BTreeSet::new();
        for op in OPS {
            let cdb = cdb_of(op);
            let refused = refused_for(&t, &cdb, s);
            assert_eq!(
                refused,
                !s.admits(op.alua),
                "{} in {s}: the table says {}",
                op.name,
                if s.admits(op.alua) {
                    "allowed"
                } else {
                    "refused"
                }
            );
            if !refused {
                admitted.insert((op.opcode, op.sa));
            }
        }
        if !s.is_active() {
            assert_eq!(admitted, spc4_allowed(s), "{s}");
            // An opcode we do not have: the state's sense, not INVALID
            // COMMAND OPERATION CODE.
            assert!(refused_for(&t, &[0xc9, 0, 0, 0, 0, 0], s), "{s}");
        } else {
            assert_eq!(admitted.len(), OPS.len(), "{s}");
        }
    }
}

#[tokio::test]
async fn unit_attention_comes_before_the_state_and_reservations_after() {
    let g = TargetPortGroup::new(1, AccessState::Standby, false);
    let base = Fixture::new(64, 512);
    let t = base.through(&port(1, &g), "iqn.test:a,i,0x1");
    // POWER ON first, then TARGET PORT IN STANDBY STATE.
    assert_eq!(t.check(&[0, 0, 0, 0, 0, 0]).await.code(), 0x2900);
    let s = t.check(&[0, 0, 0, 0, 0, 0]).await;
    assert_eq!((s.key, s.code()), (2, 0x040b));
    // Unavailable: READ(10) refused the same way.
    g.set_state(AccessState::Unavailable, Cause::Implicit);
    let s = t.check(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]).await;
    assert_eq!((s.key, s.code()), (2, 0x040c));
}

/// REPORT TARGET PORT GROUPS, `format` 0 or 1, 4096 bytes.
fn rtpg(format: u8) -> [u8; 12] {
    [0xa3, 0x0a | format << 5, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]
}

#[tokio::test]
async fn report_target_port_groups_in_both_formats() {
    let a = TargetPortGroup::new(1, AccessState::ActiveOptimized, true);
    let b = TargetPortGroup::new(2, AccessState::Standby, false);
    b.set_transition_time(Duration::from_millis(1500));
    let base = Fixture::new(64, 512);
    let (p1, p2, p3) = (port(1, &a), port(2, &b), port(3, &b));
    for p in [&p1, &p2, &p3] {
        attach(&base.lu, p);
    }
    let t = base.through(&p2, "iqn.test:a,i,0x1");
    // Through the standby path: the first command reports POWER ON.
    assert_eq!(t.check(&rtpg(0)).await.code(), 0x2900);
    let r = t.run(&rtpg(0), &[]).await;
    assert_eq!(r.status, 0);
    let d = r.data.to_vec();
    // Two groups: 1 (one port), 2 (two ports): 4 + 12 + 16 bytes.
    assert_eq!(d.len(), 32);
    assert_eq!(u32::from_be_bytes(d[0..4].try_into().unwrap()), 28);
    assert_eq!(&d[4..12], &[0x80, 0xcf, 0, 1, 0, 0, 0, 1]);
    assert_eq!(&d[12..16], &[0, 0, 0, 1]);
    assert_eq!(&d[16..24], &[0x02, 0xcf, 0, 2, 0, 0, 0, 2]);
    assert_eq!(&d[24..32], &[0, 0, 0, 2, 0, 0, 0, 3]);
    // Extended header: format type 1, implicit transition time 2 s.
    let e = t.run(&rtpg(1), &[]).await.data.to_vec();
    assert_eq!(e.len(), 36);
    assert_eq!(u32::from_be_bytes(e[0..4].try_into().unwrap()), 32);
    assert_eq!(&e[4..8], &[0x10, 2, 0, 0]);
    assert_eq!(&e[8..], &d[4..]);
    // Allocation length 4: the header alone, length still whole.
    let mut short = rtpg(0);
    short[8] = 0;
    short[9] = 4;
    let h = t.run(&short, &[]).await.data.to_vec();
    assert_eq!(h, d[0..4].to_vec());
    // Format 2 does not exist.
    assert_eq!(t.check(&rtpg(2)).await.code(), 0x2400);
    // A port that stops exporting the LU leaves the report.
    detach(&base.lu, &p3);
    let d = t.run(&rtpg(0), &[]).await.data.to_vec();
    assert_eq!(&d[16..24], &[0x02, 0xcf, 0, 2, 0, 0, 0, 1]);
}

/// SET TARGET PORT GROUPS: group `id` to `state`.
fn stpg(descs: &[(u8, u16)]) -> (Vec<u8>, Vec<u8>) {
    let mut p = vec![0u8; 4];
    for &(state, id) in descs {
        p.extend_from_slice(&[state, 0]);
        p.extend_from_slice(&id.to_be_bytes());
    }
    let n = p.len() as u32;
    let mut c = vec![0xa4, 0x0a, 0, 0, 0, 0];
    c.extend_from_slice(&n.to_be_bytes());
    c.extend_from_slice(&[0, 0]);
    (c, p)
}

#[tokio::test]
async fn set_target_port_groups_moves_states_and_tells_the_others() {
    let a = TargetPortGroup::new(1, AccessState::ActiveOptimized, false);
    let b = TargetPortGroup::new(2, AccessState::Standby, false);
    let base = Fixture::new(64, 512);
    let (p1, p2) = (port(1, &a), port(2, &b));
    attach(&base.lu, &p1);
    attach(&base.lu, &p2);
    let x = base.through(&p1, "iqn.test:x,i,0x1");
    let y = base.through(&p2, "iqn.test:y,i,0x1");
    x.clear_ua().await;
    assert_eq!(y.check(&[0, 0, 0, 0, 0, 0]).await.code(), 0x2900);

    // Implicit ALUA only: the command is not offered.
    let (c, p) = stpg(&[(0, 2)]);
    assert_eq!(x.check_with(&c, &p).await.code(), 0x2000);

    for g in [&a, &b] {
        g.set_tpgs(Tpgs::Both);
    }
    // Through the standby path itself (STPG is allowed there).
    let (c, p) = stpg(&[(0x0, 2), (0x1, 1)]);
    assert_eq!(y.run(&c, &p).await.status, 0);
    assert_eq!(
        (a.state(), b.state()),
        (
            AccessState::ActiveNonOptimized,
            AccessState::ActiveOptimized
        )
    );
    // The other nexus is told, the one that asked is not.
    let s = x.check(&[0, 0, 0, 0, 0, 0]).await;
    assert_eq!((s.key, s.code()), (6, 0x2a06));
    assert_eq!(y.run(&[0, 0, 0, 0, 0, 0], &[]).await.status, 0);
    // STATUS CODE: altered by SET TARGET PORT GROUPS.
    let d = x.run(&rtpg(0), &[]).await.data.to_vec();
    assert_eq!((d[4] & 0x0f, d[9]), (0x1, 1));

    // Refused before anything changes: Transitioning asked for, a group
    // the LU does not have, a ragged list.
    let (c, p) = stpg(&[(0x2, 1), (0xf, 2)]);
    let s = x.check_with(&c, &p).await;
    assert_eq!((s.code(), s.field.map(|f| f.byte)), (0x2600, Some(8)));
    let (c, p) = stpg(&[(0x2, 1), (0x2, 9)]);
    assert_eq!(x.check_with(&c, &p).await.code(), 0x2600);
    assert_eq!(a.state(), AccessState::ActiveNonOptimized);
    let (mut c, mut p) = stpg(&[(0x2, 1)]);
    p.push(0);
    c[9] = p.len() as u8;
    assert_eq!(x.check_with(&c, &p).await.code(), 0x1a00);
}

#[tokio::test]
async fn a_transition_passes_through_transitioning() {
    let g = TargetPortGroup::new(1, AccessState::ActiveOptimized, false);
    g.set_transition_time(Duration::from_millis(200));
    let base = Fixture::new(64, 512);
    let p = port(1, &g);
    attach(&base.lu, &p);
    let t = base.through(&p, "iqn.test:a,i,0x1");
    t.clear_ua().await;
    g.set_state(AccessState::Standby, Cause::Implicit);
    assert_eq!(g.state(), AccessState::Transitioning);
    assert_eq!(g.wanted(), AccessState::Standby);
    let s = t.check(&[0, 0, 0, 0, 0, 0]).await;
    assert_eq!((s.key, s.code()), (2, 0x040a));
    // RTPG still answers during it.
    let d = t.run(&rtpg(0), &[]).await.data.to_vec();
    assert_eq!(d[4] & 0x0f, 0x0f);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(g.state(), AccessState::Standby);
    // Then ASYMMETRIC ACCESS STATE CHANGED, then the standby sense.
    assert_eq!(t.check(&[0, 0, 0, 0, 0, 0]).await.code(), 0x2a06);
    assert_eq!(t.check(&[0, 0, 0, 0, 0, 0]).await.code(), 0x040b);
    // A second change while one is under way: the last one wins.
    g.set_state(AccessState::Unavailable, Cause::Implicit);
    g.set_state(AccessState::ActiveOptimized, Cause::Implicit);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(g.state(), AccessState::ActiveOptimized);
}

#[test]
fn inquiry_tpgs_bits() {
    assert_eq!(Tpgs::Implicit.inquiry_bits(), 0x10);
    assert_eq!(Tpgs::Both.inquiry_bits(), 0x30);
    assert!(!Tpgs::Implicit.explicit());
}
