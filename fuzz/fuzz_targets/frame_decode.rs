//! The transport's frame decoder on arbitrary bytes: never panics, never reads past its input,
//! and a decoded frame re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outpost_transport::{decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    let max = 64 * 1024;
    if let Ok(Some((payload, used))) = decode_frame(data, max) {
        assert!(used <= data.len());
        let again = encode_frame(payload, max).expect("a decoded payload fits its own limit");
        assert_eq!(&again[..], &data[..used]);
    }
});
