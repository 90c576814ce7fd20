//! Task management: [`TmfFunction`] and its [`TmfResult`].

/// Task management functions (SAM-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfFunction {
    AbortTask {
        lun: u64,
        tag: u64,
    },
    AbortTaskSet {
        lun: u64,
    },
    ClearTaskSet {
        lun: u64,
    },
    LogicalUnitReset {
        lun: u64,
    },
    /// Warm and cold target resets are the same to a target without power
    /// to cycle.
    TargetReset,
}

/// Service response of a task management function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfResult {
    Complete,
    /// ABORT TASK: no such task (it may have completed already).
    TaskNotFound,
    LunNotFound,
    NotSupported,
    Rejected,
}
