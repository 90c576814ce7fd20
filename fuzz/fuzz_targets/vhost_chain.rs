#![no_main]

// A guest that writes garbage into its virtqueue: descriptor table,
// available ring, request headers and buffers (rtgt-vhost's fuzz_entry).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rtgt_vhost::fuzz_entry::virtqueue(data);
});
