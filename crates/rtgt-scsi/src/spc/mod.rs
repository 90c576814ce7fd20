//! SPC command handlers: INQUIRY (`inquiry`) and its VPD pages (`vpd`),
//! MODE SENSE / SELECT (`mode`), REPORT LUNS (`report_luns`), REPORT
//! SUPPORTED OPERATION CODES (`report_opcodes`), REQUEST SENSE
//! (`request_sense`), and TEST UNIT READY / START STOP UNIT / removable
//! medium (`readiness`).

pub(crate) mod inquiry;
pub(crate) mod mode;
pub(crate) mod readiness;
pub(crate) mod report_luns;
pub(crate) mod report_opcodes;
pub(crate) mod request_sense;
pub(crate) mod vpd;
