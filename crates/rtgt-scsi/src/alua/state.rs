//! Asymmetric access states (SPC-4 5.15.2) and which commands each one
//! lets through. What a command may do in each state is a column of the
//! opcode table ([`Allow`] in `OpDesc::alua`); this file only says what
//! the states are and what a refused command is told.

use crate::core::sense::{self, Sense};

/// The access state of a target port group (ASYMMETRIC ACCESS STATE of
/// REPORT TARGET PORT GROUPS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessState {
    ActiveOptimized,
    ActiveNonOptimized,
    Standby,
    Unavailable,
    Offline,
    /// Between two states (set by the device server, never asked for).
    Transitioning,
}

impl AccessState {
    /// Every state, in code order.
    pub const ALL: [AccessState; 6] = [
        AccessState::ActiveOptimized,
        AccessState::ActiveNonOptimized,
        AccessState::Standby,
        AccessState::Unavailable,
        AccessState::Offline,
        AccessState::Transitioning,
    ];

    /// The 4-bit code of SPC-4 table 421.
    pub const fn code(self) -> u8 {
        match self {
            AccessState::ActiveOptimized => 0x0,
            AccessState::ActiveNonOptimized => 0x1,
            AccessState::Standby => 0x2,
            AccessState::Unavailable => 0x3,
            AccessState::Offline => 0xe,
            AccessState::Transitioning => 0xf,
        }
    }

    pub fn from_code(c: u8) -> Option<AccessState> {
        AccessState::ALL.into_iter().find(|s| s.code() == c)
    }

    /// The name used in configuration files, the API and `ls`.
    pub const fn name(self) -> &'static str {
        match self {
            AccessState::ActiveOptimized => "active_optimized",
            AccessState::ActiveNonOptimized => "active_nonoptimized",
            AccessState::Standby => "standby",
            AccessState::Unavailable => "unavailable",
            AccessState::Offline => "offline",
            AccessState::Transitioning => "transitioning",
        }
    }

    pub fn from_name(s: &str) -> Option<AccessState> {
        AccessState::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Both active states let every command through.
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            AccessState::ActiveOptimized | AccessState::ActiveNonOptimized
        )
    }

    /// The opcode table's [`Allow`] bit for this state (0 for the active
    /// states, which allow everything).
    pub const fn allow_bit(self) -> u8 {
        match self {
            AccessState::ActiveOptimized | AccessState::ActiveNonOptimized => 0,
            AccessState::Standby => Allow::STANDBY,
            AccessState::Unavailable => Allow::UNAVAILABLE,
            AccessState::Offline => Allow::OFFLINE,
            AccessState::Transitioning => Allow::TRANSITIONING,
        }
    }

    /// What a command this state refuses is told: NOT READY, LOGICAL UNIT
    /// NOT ACCESSIBLE / NOT READY with the state's ASCQ.
    pub const fn refusal(self) -> Sense {
        match self {
            AccessState::Standby => sense::ALUA_STANDBY,
            AccessState::Unavailable => sense::ALUA_UNAVAILABLE,
            AccessState::Offline => sense::ALUA_OFFLINE,
            _ => sense::ALUA_TRANSITIONING,
        }
    }

    /// Whether a command whose table entry allows `allow` may run.
    pub const fn admits(self, allow: u8) -> bool {
        self.is_active() || allow & self.allow_bit() != 0
    }
}

impl std::fmt::Display for AccessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The states, other than the active ones, in which a command runs: the
/// bits of the opcode table's `alua` column.
pub struct Allow;

impl Allow {
    pub const STANDBY: u8 = 0x01;
    pub const UNAVAILABLE: u8 = 0x02;
    pub const OFFLINE: u8 = 0x04;
    pub const TRANSITIONING: u8 = 0x08;
    /// INQUIRY, REPORT LUNS, REQUEST SENSE: in every state.
    pub const ALL: u8 = 0x0f;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for s in AccessState::ALL {
            assert_eq!(AccessState::from_code(s.code()), Some(s));
            assert_eq!(AccessState::from_name(s.name()), Some(s));
        }
        assert_eq!(
            AccessState::from_code(4),
            None,
            "LBA dependent is not offered"
        );
    }

    #[test]
    fn refusals_are_the_standards_ascq() {
        assert_eq!(AccessState::Standby.refusal().code(), 0x040b);
        assert_eq!(AccessState::Unavailable.refusal().code(), 0x040c);
        assert_eq!(AccessState::Offline.refusal().code(), 0x0412);
        assert_eq!(AccessState::Transitioning.refusal().code(), 0x040a);
        assert!(AccessState::ActiveNonOptimized.admits(0));
        assert!(!AccessState::Standby.admits(Allow::UNAVAILABLE));
    }
}
