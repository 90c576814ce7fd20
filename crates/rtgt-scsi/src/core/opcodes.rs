//! THE opcode table: one entry per supported operation code (and service
//! action), holding its decoder, its CDB usage mask and its flags. The same
//! table dispatches commands ([`lookup`]), checks reserved bits against the
//! usage masks, and answers REPORT SUPPORTED OPERATION CODES
//! ([`crate::spc::report_opcodes`]).
//!
//! A decoder runs in `prepare()`: it validates the CDB, decides how many
//! Data-Out bytes the command takes, and returns a [`Plan`](super::handler::Plan) whose
//! [`Action`](super::handler::Action) `execute()` carries out.

use super::handler::flags::{ANY_LUN, MEDIUM, MEDIUM_WRITE};
use super::handler::DecodeFn;
use crate::alua::Allow;
use crate::core::sense::{self, Sense};
use crate::sbc::{capacity, read_write};
use crate::spc::{inquiry, mode, readiness, report_luns, report_opcodes, request_sense};

/// One supported command.
pub(crate) struct OpDesc {
    pub opcode: u8,
    /// Service action (byte 1 bits 4:0) for opcodes that have them.
    pub sa: Option<u8>,
    pub name: &'static str,
    /// CDB usage data (SPC-4 6.35.3): byte 0 the opcode, byte 1 carries the
    /// service action value for commands with one, every other bit set is
    /// a bit the device server interprets. Its length is the CDB length.
    pub usage: &'static [u8],
    pub flags: u8,
    pub decode: DecodeFn,
    /// Recommended command timeout in seconds (RCTD).
    pub timeout: u32,
    /// The asymmetric access states, besides the active ones, in which the
    /// command runs ([`Allow`] bits; SPC-4 5.15.2.4, SBC-4 4.x for READ
    /// CAPACITY in Standby, which the Linux sd driver needs on every path).
    /// Elsewhere it ends with NOT READY and the state's sense.
    pub alua: u8,
}

impl OpDesc {
    /// The entry with `flags` added.
    const fn flagged(mut self, flags: u8) -> OpDesc {
        self.flags |= flags;
        self
    }

    /// The entry, allowed in these non-active ALUA states.
    const fn alua(mut self, states: u8) -> OpDesc {
        self.alua = states;
        self
    }

    /// Bits of byte 1 that hold the service action.
    pub fn sa_bits(&self) -> u8 {
        if self.sa.is_some() {
            0x1f
        } else {
            0
        }
    }
}

const fn op(
    opcode: u8,
    name: &'static str,
    usage: &'static [u8],
    flags: u8,
    decode: DecodeFn,
) -> OpDesc {
    OpDesc {
        opcode,
        sa: None,
        name,
        usage,
        flags,
        decode,
        timeout: 30,
        alua: 0,
    }
}

const fn op_sa(
    opcode: u8,
    sa: u8,
    name: &'static str,
    usage: &'static [u8],
    decode: DecodeFn,
) -> OpDesc {
    OpDesc {
        opcode,
        sa: Some(sa),
        name,
        usage,
        flags: 0,
        decode,
        timeout: 30,
        alua: 0,
    }
}

/// The table, sorted by opcode and service action (one instance, so that
/// entries have one address).
pub(crate) static OPS: &[OpDesc] = TABLE;

const TABLE: &[OpDesc] = &[
    op(
        0x00,
        "TEST UNIT READY",
        &[0x00, 0, 0, 0, 0, 0],
        MEDIUM,
        readiness::decode_test_unit_ready,
    ),
    op(
        0x03,
        "REQUEST SENSE",
        &[0x03, 0x01, 0, 0, 0xff, 0],
        ANY_LUN,
        request_sense::decode,
    )
    .alua(Allow::ALL),
    op(
        0x08,
        "READ(6)",
        &[0x08, 0x1f, 0xff, 0xff, 0xff, 0],
        MEDIUM,
        read_write::decode_read6,
    ),
    op(
        0x0a,
        "WRITE(6)",
        &[0x0a, 0x1f, 0xff, 0xff, 0xff, 0],
        MEDIUM_WRITE | MEDIUM,
        read_write::decode_write6,
    ),
    op(
        0x12,
        "INQUIRY",
        &[0x12, 0x01, 0xff, 0xff, 0xff, 0],
        ANY_LUN,
        inquiry::decode,
    )
    .alua(Allow::ALL),
    op(
        0x15,
        "MODE SELECT(6)",
        &[0x15, 0x11, 0, 0, 0xff, 0],
        0,
        mode::decode_select6,
    )
    .alua(Allow::STANDBY),
    op(
        0x16,
        "RESERVE(6)",
        &[0x16, 0, 0, 0, 0, 0],
        0,
        crate::pr::reservation::decode_reserve,
    ),
    op(
        0x17,
        "RELEASE(6)",
        &[0x17, 0, 0, 0, 0, 0],
        0,
        crate::pr::reservation::decode_release,
    ),
    op(
        0x1a,
        "MODE SENSE(6)",
        &[0x1a, 0x08, 0xff, 0xff, 0xff, 0],
        0,
        mode::decode_sense6,
    )
    .alua(Allow::STANDBY),
    op(
        0x1b,
        "START STOP UNIT",
        &[0x1b, 0x01, 0, 0x0f, 0xf7, 0],
        0,
        readiness::decode_start_stop,
    ),
    op(
        0x1e,
        "PREVENT ALLOW MEDIUM REMOVAL",
        &[0x1e, 0, 0, 0, 0x03, 0],
        0,
        readiness::decode_prevent_allow,
    ),
    op(
        0x25,
        "READ CAPACITY(10)",
        &[0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0],
        MEDIUM,
        capacity::decode10,
    )
    .alua(Allow::STANDBY),
    op(
        0x28,
        "READ(10)",
        &[0x28, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0],
        MEDIUM,
        read_write::decode_read10,
    ),
    op(
        0x2a,
        "WRITE(10)",
        &[0x2a, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0],
        MEDIUM_WRITE | MEDIUM,
        read_write::decode_write10,
    ),
    op(
        0x2e,
        "WRITE AND VERIFY(10)",
        &[0x2e, 0x12, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0],
        MEDIUM_WRITE | MEDIUM,
        read_write::decode_write_verify10,
    ),
    op(
        0x2f,
        "VERIFY(10)",
        &[0x2f, 0x16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0],
        MEDIUM,
        read_write::decode_verify10,
    ),
    op(
        0x34,
        "PRE-FETCH(10)",
        &[0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0],
        MEDIUM,
        read_write::decode_prefetch10,
    ),
    op(
        0x35,
        "SYNCHRONIZE CACHE(10)",
        &[0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0],
        MEDIUM,
        read_write::decode_sync10,
    ),
    op(
        0x37,
        "READ DEFECT DATA(10)",
        &[0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0],
        MEDIUM,
        crate::sbc::defect::decode10,
    ),
    op(
        0x41,
        "WRITE SAME(10)",
        &[0x41, 0x08, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0],
        MEDIUM_WRITE | MEDIUM,
        crate::sbc::thin::decode_write_same,
    ),
    op(
        0x42,
        "UNMAP",
        &[0x42, 0x00, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0],
        MEDIUM_WRITE | MEDIUM,
        crate::sbc::thin::decode_unmap,
    ),
    op_sa(
        0x48,
        crate::sbc::sanitize::OVERWRITE,
        "SANITIZE / OVERWRITE",
        &[0x48, 0xa1, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
        crate::sbc::sanitize::decode,
    )
    .flagged(MEDIUM_WRITE | MEDIUM),
    op_sa(
        0x48,
        crate::sbc::sanitize::BLOCK_ERASE,
        "SANITIZE / BLOCK ERASE",
        &[0x48, 0xa2, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
        crate::sbc::sanitize::decode,
    )
    .flagged(MEDIUM_WRITE | MEDIUM),
    op_sa(
        0x48,
        crate::sbc::sanitize::EXIT_FAILURE_MODE,
        "SANITIZE / EXIT FAILURE MODE",
        &[0x48, 0xbf, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
        crate::sbc::sanitize::decode,
    ),
    op(
        0x55,
        "MODE SELECT(10)",
        &[0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
        0,
        mode::decode_select10,
    )
    .alua(Allow::STANDBY),
    op(
        0x56,
        "RESERVE(10)",
        &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        0,
        crate::pr::reservation::decode_reserve,
    ),
    op(
        0x57,
        "RELEASE(10)",
        &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        0,
        crate::pr::reservation::decode_release,
    ),
    op(
        0x5a,
        "MODE SENSE(10)",
        &[0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0],
        0,
        mode::decode_sense10,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x5e,
        0x00,
        "PERSISTENT RESERVE IN / READ KEYS",
        &[0x5e, 0x00, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
        crate::pr::persistent_reservation::decode_in,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x5e,
        0x01,
        "PERSISTENT RESERVE IN / READ RESERVATION",
        &[0x5e, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
        crate::pr::persistent_reservation::decode_in,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x5e,
        0x02,
        "PERSISTENT RESERVE IN / REPORT CAPABILITIES",
        &[0x5e, 0x02, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
        crate::pr::persistent_reservation::decode_in,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x5e,
        0x03,
        "PERSISTENT RESERVE IN / READ FULL STATUS",
        &[0x5e, 0x03, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
        crate::pr::persistent_reservation::decode_in,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x5f,
        0x00,
        "PERSISTENT RESERVE OUT / REGISTER",
        &[0x5f, 0x00, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
        crate::pr::persistent_reservation::decode_out,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x5f,
        0x01,
        "PERSISTENT RESERVE OUT / RESERVE",
        &[0x5f, 0x01, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
        crate::pr::persistent_reservation::decode_out,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x5f,
        0x02,
        "PERSISTENT RESERVE OUT / RELEASE",
        &[0x5f, 0x02, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
        crate::pr::persistent_reservation::decode_out,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x5f,
        0x03,
        "PERSISTENT RESERVE OUT / CLEAR",
        &[0x5f, 0x03, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
        crate::pr::persistent_reservation::decode_out,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x5f,
        0x04,
        "PERSISTENT RESERVE OUT / PREEMPT",
        &[0x5f, 0x04, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
        crate::pr::persistent_reservation::decode_out,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x5f,
        0x05,
        "PERSISTENT RESERVE OUT / PREEMPT AND ABORT",
        &[0x5f, 0x05, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
        crate::pr::persistent_reservation::decode_out,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x5f,
        0x06,
        "PERSISTENT RESERVE OUT / REGISTER AND IGNORE EXISTING KEY",
        &[0x5f, 0x06, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
        crate::pr::persistent_reservation::decode_out,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x5f,
        0x07,
        "PERSISTENT RESERVE OUT / REGISTER AND MOVE",
        &[0x5f, 0x07, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
        crate::pr::persistent_reservation::decode_out,
    )
    .alua(Allow::STANDBY),
    op_sa(
        0x83,
        0x00,
        "EXTENDED COPY(LID1)",
        &[
            0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
        crate::xcopy::decode_extended_copy,
    )
    .flagged(MEDIUM),
    op_sa(
        0x84,
        0x00,
        "RECEIVE COPY STATUS(LID1)",
        &[
            0x84, 0x00, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
        crate::xcopy::decode_receive_copy_results,
    ),
    op_sa(
        0x84,
        0x03,
        "RECEIVE COPY OPERATING PARAMETERS",
        &[
            0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
        crate::xcopy::decode_receive_copy_results,
    ),
    op(
        0x88,
        "READ(16)",
        &[
            0x88, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0,
        ],
        MEDIUM,
        read_write::decode_read16,
    ),
    op(
        0x89,
        "COMPARE AND WRITE",
        &[
            0x89, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x1f, 0,
        ],
        MEDIUM_WRITE | MEDIUM,
        crate::sbc::atomic::decode_compare_and_write,
    ),
    op(
        0x8a,
        "WRITE(16)",
        &[
            0x8a, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0,
        ],
        MEDIUM_WRITE | MEDIUM,
        read_write::decode_write16,
    ),
    op(
        0x8b,
        "ORWRITE(16)",
        &[
            0x8b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0,
        ],
        MEDIUM_WRITE | MEDIUM,
        crate::sbc::atomic::decode_orwrite,
    ),
    op(
        0x8e,
        "WRITE AND VERIFY(16)",
        &[
            0x8e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0,
        ],
        MEDIUM_WRITE | MEDIUM,
        read_write::decode_write_verify16,
    ),
    op(
        0x8f,
        "VERIFY(16)",
        &[
            0x8f, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0,
        ],
        MEDIUM,
        read_write::decode_verify16,
    ),
    op(
        0x90,
        "PRE-FETCH(16)",
        &[
            0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0,
        ],
        MEDIUM,
        read_write::decode_prefetch16,
    ),
    op(
        0x91,
        "SYNCHRONIZE CACHE(16)",
        &[
            0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0,
        ],
        MEDIUM,
        read_write::decode_sync16,
    ),
    op(
        0x93,
        "WRITE SAME(16)",
        &[
            0x93, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0,
        ],
        MEDIUM_WRITE | MEDIUM,
        crate::sbc::thin::decode_write_same,
    ),
    op(
        0x9c,
        "WRITE ATOMIC(16)",
        &[
            0x9c, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff, 0x1f, 0,
        ],
        MEDIUM_WRITE | MEDIUM,
        crate::sbc::atomic::decode_write_atomic16,
    ),
    op_sa(
        0x9e,
        0x10,
        "READ CAPACITY(16)",
        &[
            0x9e, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x01, 0,
        ],
        capacity::decode16,
    )
    .flagged(MEDIUM)
    .alua(Allow::STANDBY),
    op_sa(
        0x9e,
        0x12,
        "GET LBA STATUS",
        &[
            0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
        crate::sbc::thin::decode_get_lba_status,
    )
    .flagged(MEDIUM),
    op(
        0xa0,
        "REPORT LUNS",
        &[0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
        ANY_LUN,
        report_luns::decode,
    )
    .alua(Allow::ALL),
    op_sa(
        0xa3,
        0x0a,
        "REPORT TARGET PORT GROUPS",
        &[0xa3, 0xea, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
        crate::alua::commands::decode_report,
    )
    .alua(Allow::STANDBY | Allow::UNAVAILABLE | Allow::TRANSITIONING),
    op_sa(
        0xa3,
        0x0c,
        "REPORT SUPPORTED OPERATION CODES",
        &[
            0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
        report_opcodes::decode,
    ),
    op_sa(
        0xa4,
        0x0a,
        "SET TARGET PORT GROUPS",
        &[0xa4, 0x0a, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
        crate::alua::commands::decode_set,
    )
    .alua(Allow::STANDBY | Allow::UNAVAILABLE),
    op(
        0xa8,
        "READ(12)",
        &[
            0xa8, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0,
        ],
        MEDIUM,
        read_write::decode_read12,
    ),
    op(
        0xaa,
        "WRITE(12)",
        &[
            0xaa, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0,
        ],
        MEDIUM_WRITE | MEDIUM,
        read_write::decode_write12,
    ),
    op(
        0xae,
        "WRITE AND VERIFY(12)",
        &[
            0xae, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0,
        ],
        MEDIUM_WRITE | MEDIUM,
        read_write::decode_write_verify12,
    ),
    op(
        0xaf,
        "VERIFY(12)",
        &[
            0xaf, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0,
        ],
        MEDIUM,
        read_write::decode_verify12,
    ),
    op(
        0xb7,
        "READ DEFECT DATA(12)",
        &[
            0xb7, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
        MEDIUM,
        crate::sbc::defect::decode12,
    ),
];

/// `INDEX[opcode]` is 1 + the position in [`OPS`] of the first entry with
/// that opcode, or 0 when the opcode is not supported.
static INDEX: [u8; 256] = build_index();

const fn build_index() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = TABLE.len();
    while i > 0 {
        i -= 1;
        t[TABLE[i].opcode as usize] = (i + 1) as u8;
    }
    t
}

/// Whether `opcode` has service actions.
pub(crate) fn has_service_actions(opcode: u8) -> bool {
    match INDEX[opcode as usize] {
        0 => false,
        i => OPS[i as usize - 1].sa.is_some(),
    }
}

/// The entry for `opcode` (and service action `sa` if it has them).
pub(crate) fn find(opcode: u8, sa: u8) -> Option<&'static OpDesc> {
    let i = INDEX[opcode as usize] as usize;
    if i == 0 {
        return None;
    }
    OPS[i - 1..]
        .iter()
        .take_while(|o| o.opcode == opcode)
        .find(|o| o.sa.is_none() || o.sa == Some(sa))
}

/// Look up the entry for a CDB: INVALID COMMAND OPERATION CODE for an
/// unknown opcode, INVALID FIELD IN CDB (byte 1) for an unknown service
/// action, and the reserved-bit check against the usage mask.
pub(crate) fn lookup(cdb: &[u8]) -> Result<&'static OpDesc, Sense> {
    let opcode = *cdb.first().ok_or(sense::INVALID_OPCODE)?;
    let sa = cdb.get(1).map_or(0, |b| b & 0x1f);
    let op = match find(opcode, sa) {
        Some(op) => op,
        None if has_service_actions(opcode) => return Err(Sense::invalid_cdb_field(1, Some(4))),
        None => return Err(sense::INVALID_OPCODE),
    };
    if cdb.len() < op.usage.len() {
        return Err(Sense::invalid_cdb_field(cdb.len(), None));
    }
    crate::core::cdb::check_reserved(cdb, op.usage, op.sa_bits())?;
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cdb::cdb_len;

    #[test]
    fn table_is_sorted_and_consistent() {
        for w in OPS.windows(2) {
            assert!(
                (w[0].opcode, w[0].sa) < (w[1].opcode, w[1].sa),
                "{} / {} out of order",
                w[0].name,
                w[1].name
            );
        }
        for o in OPS {
            assert_eq!(o.usage[0], o.opcode, "{}", o.name);
            assert_eq!(Some(o.usage.len()), cdb_len(o.opcode), "{}", o.name);
            if let Some(sa) = o.sa {
                assert_eq!(o.usage[1] & 0x1f, sa, "{}", o.name);
            }
            // Every entry is found again by lookup.
            let mut cdb = vec![0u8; o.usage.len()];
            cdb[0] = o.opcode;
            cdb[1] = o.sa.unwrap_or(0);
            assert!(std::ptr::eq(find(o.opcode, o.sa.unwrap_or(0)).unwrap(), o));
            assert!(std::ptr::eq(lookup(&cdb).unwrap(), o));
        }
    }

    #[test]
    fn unknown_opcodes_and_service_actions() {
        assert_eq!(lookup(&[0xc0, 0, 0, 0, 0, 0]).err().unwrap().code(), 0x2000);
        assert_eq!(lookup(&[0x04, 0, 0, 0, 0, 0]).err().unwrap().code(), 0x2000);
        let e = lookup(&[0x9e, 0x13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .err()
            .unwrap();
        assert_eq!((e.code(), e.field.unwrap().byte), (0x2400, 1));
        // MAINTENANCE IN / REPORT IDENTIFYING INFORMATION is not there.
        let e = lookup(&[0xa3, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .err()
            .unwrap();
        assert_eq!(e.field.unwrap().byte, 1);
        assert!(lookup(&[0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_ok());
    }

    #[test]
    fn reserved_bits_and_protect_fields() {
        // RDPROTECT=1 on READ(10) is not supported: byte 1 bit 5.
        let e = lookup(&[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0]).err().unwrap();
        assert_eq!(e.code(), 0x2400);
        assert_eq!((e.field.unwrap().byte, e.field.unwrap().bit), (1, Some(5)));
        // WRPROTECT on WRITE(16): byte 1 bit 7.
        let mut w16 = [0u8; 16];
        w16[0] = 0x8a;
        w16[1] = 0xe0;
        let e = lookup(&w16).err().unwrap();
        assert_eq!((e.field.unwrap().byte, e.field.unwrap().bit), (1, Some(7)));
        // DPO/FUA are fine.
        assert!(lookup(&[0x28, 0x18, 0, 0, 0, 0, 0x1f, 0, 1, 0]).is_ok());
        // LINK in the control byte.
        let e = lookup(&[0x00, 0, 0, 0, 0, 0x01]).err().unwrap();
        assert_eq!((e.field.unwrap().byte, e.field.unwrap().bit), (5, Some(0)));
        // A short CDB.
        assert!(lookup(&[0x28, 0, 0]).is_err());
    }
}
