//! nginx's time syntax.

use std::time::Duration;

/// nginx's `ngx_parse_time` (`src/core/ngx_parse.c`): numbers with units `y M w d h m s ms`,
/// largest first, each at most once, spaces allowed between; a bare number is seconds.
/// `seconds` is nginx's `is_sec` (for `fail_timeout`): `ms` is refused. nginx's msec mode also
/// refuses `y` and `M`.
pub(in crate::nginx_import) fn parse_time(text: &str, seconds: bool) -> Option<Duration> {
    const UNITS: [(&str, u64); 8] = [
        ("y", 365 * 24 * 3600 * 1000),
        ("M", 30 * 24 * 3600 * 1000),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ];
    let b = text.as_bytes();
    let (mut total, mut value, mut valid) = (0u64, 0u64, false);
    // Index into UNITS of the last unit seen; units must come largest first.
    let mut step: Option<usize> = if seconds { None } else { Some(1) };
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            value = value.checked_mul(10)?.checked_add(u64::from(b[i] - b'0'))?;
            valid = true;
            i += 1;
            continue;
        }
        let unit = if b[i] == b'm' && b.get(i + 1) == Some(&b's') {
            i += 2;
            7
        } else if b[i] == b' ' {
            // A space ends a bare number (seconds); no unit may follow it.
            i += 1;
            if step.is_some_and(|s| s >= 6) {
                return None;
            }
            step = Some(8);
            total = total.checked_add(value.checked_mul(1000)?)?;
            value = 0;
            continue;
        } else {
            let u = UNITS
                .iter()
                .position(|(name, _)| name.as_bytes() == [b[i]])?;
            i += 1;
            u
        };
        if (unit == 7 && seconds) || step.is_some_and(|s| unit <= s) {
            return None;
        }
        step = Some(unit);
        total = total.checked_add(value.checked_mul(UNITS[unit].1)?)?;
        value = 0;
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
    }
    if !valid {
        return None;
    }
    total = total.checked_add(value.checked_mul(1000)?)?;
    Some(Duration::from_millis(total))
}
