//! The configuration loader: any text is either a configuration or a list
//! of errors, each naming its path; it never panics.

#![no_main]

use floopy_gateway::config::{parse_with, Resolve};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = parse_with(text, Resolve::Skip) {
        assert!(!errors.0.is_empty(), "an error without a reason");
        for e in &errors.0 {
            assert!(!e.path.is_empty(), "an error without a path: {e:?}");
            assert!(!e.message.is_empty(), "an error without a message: {e:?}");
        }
    }
});
