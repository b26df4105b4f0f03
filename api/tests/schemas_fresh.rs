//! The checked-in `schemas/` must be exactly what the code generates.

use std::path::Path;

#[test]
fn checked_in_schemas_match_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    for (name, generated) in swarm_api::stack::all_schemas() {
        let path = dir.join(&name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "schemas/{name} is stale or missing; run `swarm schema --out schemas/` and commit the result"
        );
    }
}
