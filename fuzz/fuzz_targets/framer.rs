#![no_main]
//! The framer never panics, never buffers more than its limit, and yields the same frames
//! however the stream is split.

use libfuzzer_sys::fuzz_target;
use meniscus_event::framing::Framer;

const MAX_FRAME: usize = 256;

fn frames(chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, String>> {
    let mut framer = Framer::new(MAX_FRAME);
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(chunk, |f| out.push(f.map(|f| f.data.to_vec()).map_err(|e| e.to_string())));
        assert!(framer.buffered() <= MAX_FRAME + 1);
    }
    framer.finish(|f| out.push(f.map(|f| f.data.to_vec()).map_err(|e| e.to_string())));
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else { return };
    let whole = frames(&[stream]);
    let at = (split as usize).min(stream.len());
    let (a, b) = stream.split_at(at);
    assert_eq!(whole, frames(&[a, b]));
});
