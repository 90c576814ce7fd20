#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rtgt_scsi::fuzz_entry::param_list(data));
