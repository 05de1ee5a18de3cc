//! Reads arbitrary bytes as a datanet export (JSONL with provenance) and as
//! a datanet descriptor. Neither may panic; a descriptor that decodes must
//! re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trib_datanet::{verify_export, Datanet, MAX_DESCRIPTOR_BYTES};
use trib_types::Canonical;

fuzz_target!(|data: &[u8]| {
    let _ = verify_export(data);
    if let Ok(d) = Datanet::decode(data, MAX_DESCRIPTOR_BYTES) {
        assert_eq!(d.encode(), data, "descriptor encoding is not canonical");
        let _ = d.validate();
    }
});
