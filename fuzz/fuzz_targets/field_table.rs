//! Field tables: the property-list validator with its nesting guard (`properties::validate`,
//! `properties::headers`) and the guard in front of amq-protocol's method decoder
//! (`frame::decode_method`). Deep nesting must be refused, never overflow the stack; a headers
//! table warren validated reads the same through amq-protocol; nothing panics.
#![no_main]

use amq_protocol::protocol::basic::parse_properties;
use libfuzzer_sys::fuzz_target;
use warren::protocol::{frame, properties, CodecError};

/// A 2 MiB tokio worker stack scaled down as the input length (8 KiB) is to frame_max (128 KiB).
const STACK: usize = 128 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        // A bare headers table: property flags with only `headers` set, then the table.
        0 => {
            let mut props = vec![0x20, 0x00];
            props.extend_from_slice(rest);
            property_list(&props);
        }
        1 => property_list(rest),
        // A method frame payload: the nesting guard, then amq-protocol. On a thread with a
        // small stack, as the broker's tokio workers have (2 MiB) and more: inputs here are
        // short, so the depth a short input reaches must overflow a short stack.
        _ => {
            let rest = rest.to_vec();
            std::thread::Builder::new()
                .stack_size(STACK)
                .spawn(move || drop(frame::decode_method(&rest)))
                .expect("thread")
                .join()
                .expect("decode_method panicked");
        }
    }
});

fn property_list(props: &[u8]) {
    let checked = properties::validate(props);
    let headers = properties::headers(props);
    assert_eq!(
        checked.is_ok(),
        headers.is_ok(),
        "validate and headers disagree"
    );
    match checked {
        Err(CodecError::Invalid("field tables nested too deep")) => {}
        // Bits 0/1 of the flags word: refused by warren, ignored by amq-protocol (on purpose).
        Err(_) if props.len() >= 2 && props[1] & 0b11 != 0 => {}
        Err(e) => {
            let theirs = parse_properties(props);
            assert!(
                !matches!(theirs, Ok(([], _))),
                "warren refused ({e}) a property list amq-protocol reads: {theirs:?}"
            );
        }
        Ok(()) => {
            let Ok(([], theirs)) = parse_properties(props) else {
                panic!("warren accepted a property list amq-protocol cannot read");
            };
            let ours = headers.ok().flatten();
            // Compared as text: a NaN double is not equal to itself.
            assert_eq!(format!("{ours:?}"), format!("{:?}", theirs.headers()));
        }
    }
}
