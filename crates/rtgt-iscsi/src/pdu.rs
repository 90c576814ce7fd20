//! iSCSI PDUs
