//! Card numbers masked as `hopscope.ingest.redaction` masks them (its module docstring is the
//! rule; this is the same scan without the regular expressions).
//!
//! Every character the rule looks at is ASCII, so the scan runs over UTF-8 bytes (a
//! multi-byte character's bytes are never ASCII) and over Latin-1 bytes alike, and masking
//! never changes a length.

const MIN_DIGITS: usize = 13;
const MAX_DIGITS: usize = 19;

fn digit(b: u8) -> bool {
    b.is_ascii_digit()
}

fn hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// The redaction pattern's start condition at `i` (`_START`): right after a complete `%XX`
/// or `\uXXXX` escape, or after no digit, `%` or incomplete escape.
fn start_ok(t: &[u8], i: usize) -> bool {
    if i >= 3 && t[i - 3] == b'%' && hex(t[i - 2]) && hex(t[i - 1]) {
        return true;
    }
    if i >= 6 && t[i - 6] == b'\\' && t[i - 5] == b'u' && t[i - 4..i].iter().all(|&b| hex(b)) {
        return true;
    }
    if i >= 1 && (digit(t[i - 1]) || t[i - 1] == b'%') {
        return false;
    }
    if i >= 2 && t[i - 2] == b'%' && hex(t[i - 1]) {
        return false;
    }
    if i >= 2 && t[i - 2] == b'\\' && t[i - 1] == b'u' {
        return false;
    }
    for k in 1..=3 {
        if i >= 2 + k
            && t[i - 2 - k] == b'\\'
            && t[i - 1 - k] == b'u'
            && t[i - k..i].iter().all(|&b| hex(b))
        {
            return false;
        }
    }
    true
}

/// Length of a separator at `j` (space, `+`, `-`, `%20`, `%2D`, `%2d`), 0 when none.
fn separator(t: &[u8], j: usize) -> usize {
    match t.get(j) {
        Some(b' ' | b'+' | b'-') => 1,
        Some(b'%') if t.get(j + 1) == Some(&b'2') && matches!(t.get(j + 2), Some(b'0' | b'D' | b'd')) => 3,
        _ => 0,
    }
}

/// The end of the candidate starting with the digit at `i` and its digit count (`_PAN`'s
/// greedy `[0-9](?:SEP?[0-9])*`).
fn candidate(t: &[u8], i: usize) -> (usize, usize) {
    let mut j = i + 1;
    let mut digits = 1;
    loop {
        let sep = separator(t, j);
        if sep > 0 && t.get(j + sep).is_some_and(|&b| digit(b)) {
            j += sep + 1;
        } else if t.get(j).is_some_and(|&b| digit(b)) {
            j += 1;
        } else {
            return (j, digits);
        }
        digits += 1;
    }
}

fn luhn(digits: &[u8]) -> bool {
    let mut total = 0u32;
    for (index, &b) in digits.iter().rev().enumerate() {
        let mut value = u32::from(b - b'0');
        if index % 2 == 1 {
            value *= 2;
            if value > 9 {
                value -= 9;
            }
        }
        total += value;
    }
    total % 10 == 0
}

/// Mask one candidate in `out` (`_mask`): the middle of every stretch of whole digit groups
/// that is 13-19 digits long and passes Luhn.
fn mask_candidate(orig: &[u8], out: &mut [u8], start: usize, end: usize) -> bool {
    // Digit groups as (position in the text, length).
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut j = start;
    while j < end {
        if digit(orig[j]) {
            let begin = j;
            while j < end && digit(orig[j]) {
                j += 1;
            }
            groups.push((begin, j - begin));
        } else {
            j += separator(orig, j).max(1);
        }
    }
    let mut offsets = Vec::with_capacity(groups.len() + 1);
    offsets.push(0usize);
    for &(_, len) in &groups {
        offsets.push(offsets[offsets.len() - 1] + len);
    }
    let all: Vec<u8> = groups.iter().flat_map(|&(p, l)| orig[p..p + l].iter().copied()).collect();
    let mut hidden = vec![false; all.len()];
    let mut any = false;
    for first in 0..groups.len() {
        for last in first + 1..=groups.len() {
            let size = offsets[last] - offsets[first];
            if size > MAX_DIGITS {
                break;
            }
            if size >= MIN_DIGITS && luhn(&all[offsets[first]..offsets[last]]) {
                for flag in &mut hidden[offsets[first] + 6..offsets[last] - 4] {
                    *flag = true;
                }
                any = true;
            }
        }
    }
    if !any {
        return false;
    }
    let mut index = 0;
    for &(position, len) in &groups {
        for k in 0..len {
            if hidden[index] {
                out[position + k] = b'*';
            }
            index += 1;
        }
    }
    true
}

/// `text` with every card number masked; None when nothing changed (the common case, found
/// without allocating).
pub fn mask(text: &[u8]) -> Option<Vec<u8>> {
    if text.iter().filter(|&&b| digit(b)).count() < MIN_DIGITS {
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < text.len() {
        if digit(text[i]) && start_ok(text, i) {
            let (end, digits) = candidate(text, i);
            if digits >= MIN_DIGITS {
                let buf = out.get_or_insert_with(|| text.to_vec());
                mask_candidate(text, buf, i, end);
                i = end;
                continue;
            }
        }
        i += 1;
    }
    match out {
        Some(buf) if buf != text => Some(buf),
        _ => None,
    }
}

/// The masked text of an integer that is a card number (`mask_pan_number`), else None.
pub fn number_text(negative: bool, magnitude: u64) -> Option<String> {
    let digits = magnitude.to_string();
    let n = digits.len();
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&n) || !luhn(digits.as_bytes()) {
        return None;
    }
    let masked = format!("{}{}{}", &digits[..6], "*".repeat(n - 10), &digits[n - 4..]);
    Some(if negative { format!("-{masked}") } else { masked })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> String {
        mask(text.as_bytes()).map_or_else(|| text.to_string(), |b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn the_redaction_examples() {
        assert_eq!(m("card 4111 1111 1111 1111 declined"), "card 4111 11** **** 1111 declined");
        assert_eq!(m("order 1234567890123 shipped"), "order 1234567890123 shipped");
        assert_eq!(m("GET /pay?card=4111+1111+1111+1111&cvv=123"), "GET /pay?card=4111+11**+****+1111&cvv=123");
        assert_eq!(m("q=card%204111111111111111 123"), "q=card%20411111******1111 123");
        assert_eq!(m("pan=5500-0000-0000-0004;exp=12/27"), "pan=5500-00**-****-0004;exp=12/27");
        assert_eq!(number_text(false, 4111111111111111).unwrap(), "411111******1111");
    }
}
