//! Model-based test of the command window: random but well-shaped
//! interleavings of SCSI commands (in and out of order, past MaxCmdSN,
//! immediate, with reused task tags), Data-Out (right and wrong), task
//! management (ABORT TASK, ABORT TASK SET, LUN RESET, TARGET RESET), NOP-Out,
//! PDUs the target rejects, and logout, run through the real full feature
//! phase. `fuzz_entry::ffp` checks, for each interleaving, that every
//! response announces a window of at most its depth with MaxCmdSN never
//! behind ExpCmdSN - 1, and that once the connection is gone no command
//! holds a window slot or sits in a task set: every command left the
//! window exactly once, whatever ended it.

use rtgt_iscsi::fuzz_entry::{ffp, FFP_FIRST_CMDSN, MAX_INPUT};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn pdu(out: &mut Vec<u8>, mut bhs: [u8; 48], data: &[u8]) {
    bhs[5..8].copy_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&bhs);
    out.extend_from_slice(data);
    out.resize(out.len() + (4 - data.len() % 4) % 4, 0);
}

/// One random interleaving, as `ffp`'s input: a control byte, then PDUs.
fn interleaving(rng: &mut Rng) -> Vec<u8> {
    // No digests; ImmediateData / InitialR2T / window depth / small
    // limits / read-only LUN at random.
    let ctl = (rng.below(256) as u8) & 0b1110_1100;
    let mut out = vec![ctl];
    let mut cmdsn = FFP_FIRST_CMDSN;
    let itts = 1 + rng.below(12) as u32; // a small pool: tags get reused
    let steps = 5 + rng.below(80);
    for _ in 0..steps {
        let itt = 1 + rng.below(itts as u64) as u32;
        let mut b = [0u8; 48];
        match rng.below(100) {
            // SCSI commands.
            0..=44 => {
                let immediate = rng.chance(5);
                b[0] = 0x01 | if immediate { 0x40 } else { 0 };
                let write = rng.chance(55);
                let blocks = 1 + rng.below(16) as u32;
                let lba = rng.below(2000) as u32;
                let attr = rng.below(4) as u8; // SIMPLE..HEAD OF QUEUE
                let len = blocks * 512;
                let edtl = match rng.below(10) {
                    0 => 0,
                    1 => len / 2,
                    2 => len + 512,
                    _ => len,
                };
                b[1] = 0x80 | attr | if write { 0x20 } else { 0x40 };
                if rng.chance(3) {
                    b[9] = 1; // an unmapped LUN
                }
                b[16..20].copy_from_slice(&itt.to_be_bytes());
                b[20..24].copy_from_slice(&edtl.to_be_bytes());
                let sn = match rng.below(20) {
                    0 => cmdsn.wrapping_add(1 + rng.below(200) as u32), // ahead / past MaxCmdSN
                    1 => cmdsn.wrapping_sub(1 + rng.below(5) as u32),   // behind
                    _ => cmdsn,
                };
                b[24..28].copy_from_slice(&sn.to_be_bytes());
                if sn == cmdsn && !immediate {
                    cmdsn = cmdsn.wrapping_add(1);
                }
                let l = lba.to_be_bytes();
                let n = (blocks as u16).to_be_bytes();
                let op = match rng.below(10) {
                    0 => 0x00, // TEST UNIT READY
                    _ if write => 0x2a,
                    _ => 0x28,
                };
                b[32..42].copy_from_slice(&[op, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]);
                let imm = if write && rng.chance(50) {
                    (edtl as usize).min(512 * (1 + rng.below(4) as usize))
                } else {
                    0
                };
                pdu(&mut out, b, &vec![0xa5; imm]);
            }
            // Data-Out: for a live write or not, with right or wrong TTT,
            // DataSN and offset.
            45..=69 => {
                b[0] = 0x05;
                b[1] = if rng.chance(70) { 0x80 } else { 0 };
                b[16..20].copy_from_slice(&itt.to_be_bytes());
                let ttt = if rng.chance(60) {
                    u32::MAX
                } else {
                    1 + rng.below(16) as u32
                };
                b[20..24].copy_from_slice(&ttt.to_be_bytes());
                b[36..40].copy_from_slice(&(rng.below(4) as u32).to_be_bytes());
                let offset = 512 * rng.below(16) as u32;
                b[40..44].copy_from_slice(&offset.to_be_bytes());
                let len = 512 * (1 + rng.below(8) as usize);
                pdu(&mut out, b, &vec![0x5a; len]);
            }
            // Task management, immediate as initiators send it.
            70..=84 => {
                b[0] = 0x40 | 0x02;
                let function = [1u8, 1, 1, 2, 5, 6][rng.below(6) as usize];
                b[1] = 0x80 | function;
                b[16..20].copy_from_slice(&(0x1000 + rng.below(1 << 20) as u32).to_be_bytes());
                let ref_itt = if function == 1 { itt } else { u32::MAX };
                b[20..24].copy_from_slice(&ref_itt.to_be_bytes());
                b[24..28].copy_from_slice(&cmdsn.to_be_bytes());
                let ref_sn = cmdsn.wrapping_sub(1 + rng.below(8) as u32);
                b[32..36].copy_from_slice(&ref_sn.to_be_bytes());
                pdu(&mut out, b, &[]);
            }
            // NOP-Out, immediate or taking a CmdSN.
            85..=92 => {
                let immediate = rng.chance(50);
                b[0] = if immediate { 0x40 } else { 0x00 };
                b[1] = 0x80;
                b[16..20].copy_from_slice(&(0x2000 + itt).to_be_bytes());
                b[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
                b[24..28].copy_from_slice(&cmdsn.to_be_bytes());
                if !immediate {
                    cmdsn = cmdsn.wrapping_add(1);
                }
                pdu(&mut out, b, b"ping");
            }
            // Something the target rejects (SNACK at ERL 0, an unknown
            // opcode).
            93..=97 => {
                b[0] = if rng.chance(50) { 0x10 } else { 0x1c };
                b[1] = 0x80;
                b[16..20].copy_from_slice(&itt.to_be_bytes());
                pdu(&mut out, b, &[]);
            }
            // Logout: the connection ends there.
            _ => {
                b[0] = 0x40 | 0x06;
                b[1] = 0x80;
                b[16..20].copy_from_slice(&0xdeadu32.to_be_bytes());
                b[24..28].copy_from_slice(&cmdsn.to_be_bytes());
                pdu(&mut out, b, &[]);
                break;
            }
        }
        if out.len() > MAX_INPUT - 64 * 1024 / 8 {
            break;
        }
    }
    out
}

#[test]
fn every_command_leaves_the_window_exactly_once() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..1500 {
        let input = interleaving(&mut rng);
        ffp(&input);
    }
}
