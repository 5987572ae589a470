//! docs/configuration.md is generated from the code; this keeps it in step.

#[test]
fn configuration_reference_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let on_disk = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {path}: {e}\nGenerate it with: cargo run -q -p bm2 -- schema --markdown > docs/configuration.md"
        )
    });
    let generated = bm2_config::schema::markdown();
    if on_disk != generated {
        let first_difference = on_disk
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one is a prefix of the other".to_string(),
                |i| {
                    format!(
                        "first difference at line {}:\n  docs:      {}\n  generated: {}",
                        i + 1,
                        on_disk.lines().nth(i).unwrap_or(""),
                        generated.lines().nth(i).unwrap_or("")
                    )
                },
            );
        panic!(
            "docs/configuration.md is out of date ({first_difference}).\n\
             Regenerate it from the workspace root with:\n\
             cargo run -q -p bm2 -- schema --markdown > docs/configuration.md"
        );
    }
}
