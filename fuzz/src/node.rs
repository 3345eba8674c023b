//! Node mode's JSON-lines protocol on arbitrary bytes.

use serde_json::Value;

/// `node::run` answers or skips every line and never fails on in-memory I/O; each reply is
/// one JSON object with a string `body.type`, at most one per input line.
pub fn node(data: &[u8]) {
    let mut out = Vec::new();
    ringproxy::node::run(data, &mut out).expect("in-memory input and output cannot fail");
    let input_lines = data.split(|&b| b == b'\n').count();
    let mut replies = 0;
    if !out.is_empty() {
        assert_eq!(
            out.last(),
            Some(&b'\n'),
            "the last reply is not a whole line"
        );
        for line in out[..out.len() - 1].split(|&b| b == b'\n') {
            let reply: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!("reply is not JSON ({e}): {}", String::from_utf8_lossy(line))
            });
            assert!(
                reply["body"]["type"].is_string(),
                "reply without a body.type: {reply}"
            );
            replies += 1;
        }
    }
    assert!(
        replies <= input_lines,
        "{replies} replies to {input_lines} lines"
    );
}
