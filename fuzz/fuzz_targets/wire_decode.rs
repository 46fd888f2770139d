//! The engine's wire message decoder on arbitrary bytes: never panics, and whatever decodes
//! re-encodes to a message that decodes to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outpost_core::engine::wire::WireMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = WireMessage::decode(data) {
        let again = WireMessage::decode(&msg.encode()).expect("re-encoded messages decode");
        assert_eq!(again, msg);
    }
});
