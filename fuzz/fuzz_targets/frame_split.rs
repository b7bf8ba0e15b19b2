//! The frame splitter (`protocol::frame::split_frame`) on arbitrary bytes fed in arbitrary
//! chunks: it never panics, frames it cuts re-encode to exactly the bytes they came from, an
//! oversized frame is refused from its 7-byte header alone (before any payload is buffered), and
//! how the input is chunked never changes the outcome.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren::protocol::frame::{split_frame, Split};

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Input exhausted with this many bytes left unsplit.
    Incomplete(usize),
    TooLarge(u32),
    BadFrameEnd,
}

/// Split `input` fed `step` bytes at a time; the frames (type, channel, payload), how it ended,
/// and for TooLarge how many bytes were buffered when it was reported.
fn split_all(input: &[u8], frame_max: u32, step: usize) -> (Vec<(u8, u16, Vec<u8>)>, End, usize) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in input.chunks(step.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match split_frame(&mut buf, frame_max) {
                Split::Frame(f) => frames.push((f.kind, f.channel, f.payload.to_vec())),
                Split::Incomplete => break,
                Split::TooLarge { size } => return (frames, End::TooLarge(size), buf.len()),
                Split::BadFrameEnd => return (frames, End::BadFrameEnd, buf.len()),
            }
        }
    }
    let left = buf.len();
    (frames, End::Incomplete(left), left)
}

fuzz_target!(|data: &[u8]| {
    let [a, b, s, input @ ..] = data else { return };
    // 0 = unlimited (before tune); otherwise at least the AMQP minimum.
    let fm = u16::from_be_bytes([*a, *b]);
    let frame_max = if fm == 0 { 0 } else { 4096 + u32::from(fm) };
    let step = usize::from(*s) + 1;

    let (frames, end, _) = split_all(input, frame_max, input.len());
    let (frames2, end2, buffered) = split_all(input, frame_max, step);
    assert_eq!(frames, frames2, "chunking changed the frames");
    assert_eq!(end, end2, "chunking changed the outcome");

    // The frames are exactly the input's prefix, re-encoded.
    let mut re = Vec::new();
    for (kind, channel, payload) in &frames {
        assert!(frame_max == 0 || payload.len() <= frame_max as usize);
        re.push(*kind);
        re.extend_from_slice(&channel.to_be_bytes());
        re.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        re.extend_from_slice(payload);
        re.push(0xCE);
    }
    assert_eq!(
        &input[..re.len()],
        &re[..],
        "frames differ from their bytes"
    );
    let rest = &input[re.len()..];
    match end {
        End::Incomplete(left) => {
            assert_eq!(left, rest.len());
            // Incomplete means: no header yet, or header but not the whole frame.
            if rest.len() >= 7 {
                let size = u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]);
                assert!(frame_max == 0 || size <= frame_max);
                assert!(rest.len() < size as usize + 8);
            }
        }
        End::TooLarge(size) => {
            assert!(frame_max != 0 && size > frame_max);
            assert_eq!(
                size,
                u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]])
            );
            // Refused as soon as the header was there: no more than one chunk past it buffered.
            assert!(
                buffered < 7 + step,
                "{buffered} bytes buffered before refusing"
            );
        }
        End::BadFrameEnd => {
            let size = u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]) as usize;
            assert_ne!(rest[size + 7], 0xCE);
        }
    }
});
