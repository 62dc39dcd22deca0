//! Node metadata from any peer: NodeMeta::decode on raw bytes must return a value or an error,
//! never panic or run away; what it decodes must re-encode and decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wesher::nodemeta::NodeMeta;

fuzz_target!(|data: &[u8]| {
    if let Ok((meta, _format)) = NodeMeta::decode(data) {
        // Our encoding refuses only what memberlist would (over its size limit).
        if let Ok(blob) = meta.encode() {
            let again = NodeMeta::decode(&blob).map(|(m, _)| m);
            assert_eq!(again.as_ref(), Ok(&meta), "re-encoding changed the metadata");
        }
    }
});
