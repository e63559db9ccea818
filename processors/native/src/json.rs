//! Compact JSON written straight into a byte buffer, as `orjson.dumps` writes the same plain
//! Python values (`json.loads` of either gives equal values): the documents' bodies, made
//! from the records without building their dicts (`document.rs`).
//!
//! What orjson would not write as plain JSON, or a UTF-8 buffer cannot hold, is refused
//! (`Ok(false)`) and the caller hands the record to the table: an integer past 64 bits (orjson
//! refuses it, the standard library writes it), a string with a lone surrogate, a value of
//! any other type (subclasses included), a map key that is no string, nesting past `DEPTH`.
//! NaN and the infinities are written `null`, as orjson writes them.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::collections::HashMap;

/// Nesting a value may have inside a document (orjson's own limit is 255).
const DEPTH: usize = 64;

const HEX: &[u8; 16] = b"0123456789abcdef";

// What each byte becomes in a JSON string: 0 itself, `u` a \u00XX escape, else the letter
// after a backslash.
static ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// `text` as a JSON string: quotes, backslashes and control characters escaped, the rest
/// (non-ASCII included) as it is.
pub fn string(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape = ESCAPES[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..at]);
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A comma unless the buffer has just opened an object or an array.
fn separate(out: &mut Vec<u8>) {
    if !matches!(out.last(), Some(b'{' | b'[')) {
        out.push(b',');
    }
}

/// `"name":` of a member whose name needs no escaping (the tables' names), with its comma.
pub fn key(out: &mut Vec<u8>, name: &str) {
    separate(out);
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `"namespace.name":`, as `key`.
pub fn key_in(out: &mut Vec<u8>, namespace: &str, name: &str) {
    separate(out);
    out.push(b'"');
    out.extend_from_slice(namespace.as_bytes());
    out.push(b'.');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `"name":` of any member name, escaped, with its comma.
pub fn any_key(out: &mut Vec<u8>, name: &str) {
    separate(out);
    string(out, name);
    out.push(b':');
}

/// Opens an array or an object as a member's value or an array's item.
pub fn open(out: &mut Vec<u8>, bracket: u8) {
    out.push(bracket);
}

/// An array's item separator before a value.
pub fn item(out: &mut Vec<u8>) {
    separate(out);
}

/// An integer in decimal, written without an allocation.
pub fn int(out: &mut Vec<u8>, value: i128) {
    let mut digits = [0u8; 40];
    let mut at = digits.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// A Python string as a JSON string; false for one with a lone surrogate.
pub fn py_string(out: &mut Vec<u8>, text: &Bound<'_, PyString>) -> bool {
    match text.to_str() {
        Ok(text) => {
            string(out, text);
            true
        }
        Err(_) => false,
    }
}

/// A float as orjson writes it: the shortest text that reads back as the same float (Rust's
/// `Debug` keeps the `.0` and an exponent for very large and small ones), `null` when it is
/// not finite.
fn float(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(format!("{value:?}").as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A plain Python value (None, bool, int, float, str, a list or tuple of them, a dict of them
/// by string keys) as JSON; false for anything else (module docstring).
pub fn value(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
    nested(out, value, 0)
}

/// A list's or a tuple's items as a JSON array; false as [`nested`] says it.
fn array<'py>(
    out: &mut Vec<u8>,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    depth: usize,
) -> PyResult<bool> {
    out.push(b'[');
    for each in items {
        item(out);
        if !nested(out, &each, depth + 1)? {
            return Ok(false);
        }
    }
    out.push(b']');
    Ok(true)
}

fn nested(out: &mut Vec<u8>, value: &Bound<'_, PyAny>, depth: usize) -> PyResult<bool> {
    if value.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(text) = value.downcast_exact::<PyString>() {
        return Ok(py_string(out, text));
    } else if value.is_exact_instance_of::<PyBool>() {
        out.extend_from_slice(if value.is_truthy()? { b"true" } else { b"false" });
    } else if value.is_exact_instance_of::<PyInt>() {
        if let Ok(number) = value.extract::<i64>() {
            int(out, i128::from(number));
        } else if let Ok(number) = value.extract::<u64>() {
            int(out, i128::from(number));
        } else {
            return Ok(false);
        }
    } else if let Ok(number) = value.downcast_exact::<PyFloat>() {
        float(out, number.value());
    } else if depth >= DEPTH {
        return Ok(false);
    } else if let Ok(items) = value.downcast_exact::<PyList>() {
        return array(out, items.iter(), depth);
    } else if let Ok(items) = value.downcast_exact::<PyTuple>() {
        return array(out, items.iter(), depth);
    } else if let Ok(map) = value.downcast_exact::<PyDict>() {
        out.push(b'{');
        for (name, each) in map.iter() {
            let Ok(name) = name.downcast_exact::<PyString>() else { return Ok(false) };
            let Ok(name) = name.to_str() else { return Ok(false) };
            any_key(out, name);
            if !nested(out, &each, depth + 1)? {
                return Ok(false);
            }
        }
        out.push(b'}');
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// Whether the tables write `value` as it is (`schema._plain` leaves it alone): None, a
/// string, an int, a bool or a float, of exactly those types.
pub fn scalar(value: &Bound<'_, PyAny>) -> bool {
    value.is_none()
        || value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyInt>()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_exact_instance_of::<PyFloat>()
}

/// Whether `flat_map` writes `value` under its key as it is (`decode.flatten` leaves it
/// alone, and the dict-building core took it): a scalar or a list.
fn flat_value(value: &Bound<'_, PyAny>) -> bool {
    scalar(value) || value.is_exact_instance_of::<PyList>()
}

/// `decode.flatten(map)` as a JSON object: nested dicts as dotted keys. False for a map that
/// is no dict, a value of another type, or one `value` refuses.
///
/// A map without nested dicts has unique keys and is written as it is read; one with them
/// may name a key twice (`{"a.b": 1, "a": {"b": 2}}`), which a dict keeps once, at its first
/// place with its last value, and Elasticsearch refuses twice: that one is gathered first.
pub fn flat_map(out: &mut Vec<u8>, map: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Ok(map) = map.downcast_exact::<PyDict>() else { return Ok(false) };
    let mark = out.len();
    out.push(b'{');
    for (name, each) in map.iter() {
        if each.is_exact_instance_of::<PyDict>() {
            out.truncate(mark);
            return flat_nested(out, map);
        }
        let Ok(name) = name.downcast_exact::<PyString>() else { return Ok(false) };
        let Ok(name) = name.to_str() else { return Ok(false) };
        if !flat_value(&each) {
            return Ok(false);
        }
        any_key(out, name);
        if !value(out, &each)? {
            return Ok(false);
        }
    }
    out.push(b'}');
    Ok(true)
}

/// `flat_map` of a map with nested dicts: the dotted keys gathered, each once.
fn flat_nested(out: &mut Vec<u8>, map: &Bound<'_, PyDict>) -> PyResult<bool> {
    let mut members: Vec<(String, Bound<'_, PyAny>)> = Vec::new();
    let mut places: HashMap<String, usize> = HashMap::new();
    if !gather(None, map, &mut members, &mut places, 0)? {
        return Ok(false);
    }
    out.push(b'{');
    for (name, each) in &members {
        any_key(out, name);
        if !value(out, each)? {
            return Ok(false);
        }
    }
    out.push(b'}');
    Ok(true)
}

fn gather<'py>(
    prefix: Option<&str>,
    map: &Bound<'py, PyDict>,
    members: &mut Vec<(String, Bound<'py, PyAny>)>,
    places: &mut HashMap<String, usize>,
    depth: usize,
) -> PyResult<bool> {
    if depth >= DEPTH {
        return Ok(false);
    }
    for (name, each) in map.iter() {
        let Ok(name) = name.downcast_exact::<PyString>() else { return Ok(false) };
        let Ok(name) = name.to_str() else { return Ok(false) };
        let name = match prefix {
            Some(prefix) => format!("{prefix}.{name}"),
            None => name.to_string(),
        };
        if let Ok(inner) = each.downcast_exact::<PyDict>() {
            if !gather(Some(&name), inner, members, places, depth + 1)? {
                return Ok(false);
            }
        } else if !flat_value(&each) {
            return Ok(false);
        } else if let Some(&at) = places.get(&name) {
            members[at].1 = each;
        } else {
            places.insert(name.clone(), members.len());
            members.push((name, each));
        }
    }
    Ok(true)
}
