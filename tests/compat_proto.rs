//! The original storage contract (tests/compat/original_storage.proto) must stay a part of
//! proto/storage.proto, declaration for declaration: names, types and field numbers.

fn declarations(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn the_original_contract_is_unchanged_in_ours() {
    let root = env!("CARGO_MANIFEST_DIR");
    let original = std::fs::read_to_string(format!("{root}/tests/compat/original_storage.proto"))
        .expect("original contract");
    let ours = declarations(
        &std::fs::read_to_string(format!("{root}/proto/storage.proto")).expect("our contract"),
    );
    let mut current_message = None;
    for line in declarations(&original) {
        assert!(
            ours.contains(&line),
            "{line:?} is missing from proto/storage.proto"
        );
        if let Some(name) = line.strip_prefix("message ") {
            current_message = Some(
                name.trim_end_matches(" {}")
                    .trim_end_matches(" {")
                    .to_string(),
            );
        }
        // Fields must sit in the same message in ours, not merely exist somewhere.
        if line.ends_with(';')
            && !line.starts_with("rpc ")
            && !line.starts_with("syntax")
            && !line.starts_with("package")
        {
            let message = current_message.as_deref().expect("field inside a message");
            let start = ours
                .iter()
                .position(|l| l == &format!("message {message} {{"))
                .unwrap_or_else(|| panic!("message {message} missing"));
            let end = start
                + ours[start..]
                    .iter()
                    .position(|l| l == "}")
                    .expect("closing brace");
            assert!(
                ours[start..end].contains(&line),
                "{line:?} not in message {message}"
            );
        }
    }
}
