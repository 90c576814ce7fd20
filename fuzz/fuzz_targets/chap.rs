#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rtgt_iscsi::fuzz_entry::chap(data));
