//! SBC command handlers: READ / WRITE / VERIFY (`read_write`), atomics
//! (`atomic`: COMPARE AND WRITE, ORWRITE, WRITE ATOMIC), thin provisioning
//! (`thin`: UNMAP, WRITE SAME, GET LBA STATUS), capacity (`capacity`),
//! SANITIZE (`sanitize`) and READ DEFECT DATA (`defect`).

pub(crate) mod atomic;
pub(crate) mod capacity;
pub(crate) mod defect;
pub(crate) mod read_write;
pub(crate) mod sanitize;
pub(crate) mod thin;
