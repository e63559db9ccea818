//! A span's `spans` document, as `hopscope.processors.schema.SPANS` writes it: the index, the id
//! and the body, written as compact JSON (`json.rs`) straight from the record, fields in the
//! table's order; `json.loads` of it equals that of `orjson.dumps` of the table's body, which
//! the sink would otherwise send. Read from the record (after the processors' semantic-convention
//! inference), so it serves every span whichever core decoded it. A span this does not write
//! the table's way (a time past year 9999, which the table fails on, an attribute value of a
//! type the decoders never produce, or a value orjson refuses: an integer past 64 bits, a lone
//! surrogate) returns None: the table writes it.
//!
//! A hop's `hops` document (`schema.HOPS`) and a coordination delay's (`schema.COORDINATION`):
//! the derivations in Python compute the records, this writes their documents as JSON; a field
//! of a type the table would convert returns None.
//!
//! A trace's `traces` document (`schema.TRACES`) from its summary and critical path, the
//! per-operation and per-service lists included, as JSON; a field of a type the table would
//! convert (a services or anomalies value that is no tuple, a map that is no dict, an operation
//! split the table would fail on, a start past 64 bits) returns None.
//!
//! A log record's `logs` document likewise (`schema.LOGS`), but as its index and body dict: the
//! id, a hash of the body's JSON as the standard library writes it with sorted keys, is taken by
//! the caller, which hashes whichever body it gets the same way.

use pyo3::intern;
use pyo3::sync::GILOnceCell;
use pyo3::prelude::*;
use crate::json;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

const NS: i128 = 1_000_000_000;
const DAY_S: i128 = 86_400;
const LONG_MAX: i128 = (1i128 << 63) - 1;

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

/// An integer as i128: through i64 when it fits (the abi3 build converts 128-bit integers
/// through Python calls, ~10x slower), else as a whole (a time past 64 bits).
fn wide(value: &Bound<'_, PyAny>) -> PyResult<i128> {
    match value.extract::<i64>() {
        Ok(value) => Ok(i128::from(value)),
        Err(_) => value.extract(),
    }
}

/// `schema.timestamp`: nanosecond ISO 8601 in UTC (`YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, always
/// `STAMP` bytes); None past year 9999.
fn stamp(time_ns: i128) -> Option<[u8; STAMP]> {
    let time_ns = time_ns.max(0);
    let (seconds, nanos) = (time_ns / NS, (time_ns % NS) as u64);
    let (days, rest) = (seconds / DAY_S, (seconds % DAY_S) as u64);
    let (year, month, day) = civil(days);
    if year > 9999 {
        return None;
    }
    let mut text = *b"0000-00-00T00:00:00.000000000Z";
    let mut digits = |at: usize, width: usize, mut value: u64| {
        for place in (at..at + width).rev() {
            text[place] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    digits(0, 4, year as u64);
    digits(5, 2, month as u64);
    digits(8, 2, day as u64);
    digits(11, 2, rest / 3600);
    digits(14, 2, rest / 60 % 60);
    digits(17, 2, rest % 60);
    digits(20, 9, nanos);
    Some(text)
}

const STAMP: usize = 30;

/// `stamp` as text.
fn timestamp(time_ns: i128) -> Option<String> {
    stamp(time_ns).map(|text| text.iter().map(|&byte| char::from(byte)).collect())
}

/// The daily index of a document of `kind` under `prefix` stamped `text` (`daily_index` of a
/// time not before 1970).
fn stamp_index(prefix: &str, kind: &str, text: &[u8; STAMP]) -> String {
    let mut index = String::with_capacity(prefix.len() + kind.len() + 12);
    index.push_str(prefix);
    index.push('-');
    index.push_str(kind);
    index.push('-');
    index.extend(text[..10].iter().map(|&byte| if byte == b'-' { '.' } else { char::from(byte) }));
    index
}

/// `stamp`'s text as a JSON string (nothing in it to escape).
fn write_stamp(out: &mut Vec<u8>, text: &[u8; STAMP]) {
    out.push(b'"');
    out.extend_from_slice(text);
    out.push(b'"');
}

/// `decode.flatten` into `out` under `prefix`; false for a value it would not write as is.
fn flatten(prefix: Option<&str>, map: &Bound<'_, PyDict>, out: &Bound<'_, PyDict>) -> PyResult<bool> {
    for (key, value) in map.iter() {
        let key = key.downcast_into::<PyString>()?;
        let name = match prefix {
            Some(prefix) => PyString::new(out.py(), &format!("{prefix}.{}", key.to_str()?)),
            None => key,
        };
        if value.is_exact_instance_of::<PyDict>() {
            if !flatten(Some(name.to_str()?), value.downcast::<PyDict>()?, out)? {
                return Ok(false);
            }
        } else if value.is_exact_instance_of::<PyString>()
            || value.is_exact_instance_of::<PyInt>()
            || value.is_exact_instance_of::<PyFloat>()
            || value.is_exact_instance_of::<PyBool>()
            || value.is_exact_instance_of::<PyList>()
            || value.is_none()
        {
            out.set_item(name, value)?;
        } else {
            return Ok(false);
        }
    }
    Ok(true)
}

fn flat<'py>(py: Python<'py>, map: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyDict>>> {
    if !map.is_exact_instance_of::<PyDict>() {
        return Ok(None);
    }
    let out = PyDict::new(py);
    Ok(flatten(None, map.downcast::<PyDict>()?, &out)?.then_some(out))
}

/// `(index, id, body)` of `span`'s document under `prefix`, or None (module docstring).
/// The daily index of a document of `kind` under `prefix` for a time in ns since the epoch.
fn daily_index(prefix: &str, kind: &str, time_ns: i128) -> String {
    let (year, month, day) = civil(time_ns / NS / DAY_S);
    format!("{prefix}-{kind}-{year:04}.{month:02}.{day:02}")
}

/// `(index, id, source)` as the Python side unpacks it.
fn parts<'py>(
    py: Python<'py>,
    index: &str,
    id: &str,
    source: &[u8],
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let items = [
        PyString::new(py, index).into_any(),
        PyString::new(py, id).into_any(),
        PyBytes::new(py, source).into_any(),
    ];
    Ok(Some(PyTuple::new(py, items)?))
}

/// `record.<name>` when it is exactly a tuple (events, links, flags), else None: the record
/// was not built by a decoder, and the table writes its document.
fn tuple_field<'py>(record: &Bound<'py, PyAny>, name: &Bound<'py, PyString>) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let value = record.getattr(name)?;
    if !value.is_exact_instance_of::<PyTuple>() {
        return Ok(None);
    }
    Ok(Some(value.downcast_into::<PyTuple>()?))
}

/// `record.<name>` as a JSON value in `out`; false for one `json::value` refuses.
fn attr(out: &mut Vec<u8>, record: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<bool> {
    json::value(out, &record.getattr(name)?)
}

/// `(index, id, source)` of `span`'s document under `prefix`, the body as compact JSON
/// (`json.rs`), or None (module docstring).
#[pyfunction]
pub fn span_document<'py>(
    py: Python<'py>,
    span: &Bound<'py, PyAny>,
    prefix: &str,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let start = wide(&span.getattr(intern!(py, "start_ns"))?)?;
    let end = wide(&span.getattr(intern!(py, "end_ns"))?)?;
    let Some(at) = stamp(start) else { return Ok(None) };
    if start < 0 {
        return Ok(None);
    }
    let index = stamp_index(prefix, "spans", &at);
    let trace_id = span.getattr(intern!(py, "trace_id"))?;
    let span_id = span.getattr(intern!(py, "span_id"))?;
    let (Ok(trace), Ok(local)) = (trace_id.downcast::<PyString>(), span_id.downcast::<PyString>()) else {
        return Ok(None);
    };
    let (Ok(trace), Ok(local)) = (trace.to_str(), local.to_str()) else { return Ok(None) };
    let id = format!("{trace}-{local}");
    let mut out = Vec::with_capacity(1024);
    out.push(b'{');
    json::key(&mut out, "@timestamp");
    write_stamp(&mut out, &at);
    json::key(&mut out, "trace.id");
    json::string(&mut out, trace);
    json::key(&mut out, "span.id");
    json::string(&mut out, local);
    for (name, field) in [
        ("parent.id", intern!(py, "parent_id")),
        ("service.name", intern!(py, "service")),
        ("service.node.name", intern!(py, "node")),
        ("span.name", intern!(py, "name")),
        ("span.kind", intern!(py, "kind")),
    ] {
        json::key(&mut out, name);
        if !attr(&mut out, span, field)? {
            return Ok(None);
        }
    }
    json::key(&mut out, "event.duration");
    json::int(&mut out, LONG_MAX.min((end - start).max(0)));
    let status = span.getattr(intern!(py, "status"))?;
    let failed = status.downcast::<PyString>().is_ok_and(|s| s.to_str().is_ok_and(|s| s == "error"));
    json::key(&mut out, "event.outcome");
    json::string(&mut out, if failed { "failure" } else { "success" });
    json::key(&mut out, "span.status.message");
    if !attr(&mut out, span, intern!(py, "status_message"))? {
        return Ok(None);
    }
    for (name, field) in [("attributes", intern!(py, "attributes")), ("resource", intern!(py, "resource"))] {
        json::key(&mut out, name);
        if !json::flat_map(&mut out, &span.getattr(field)?)? {
            return Ok(None);
        }
    }
    let Some(events) = tuple_field(span, intern!(py, "events"))? else { return Ok(None) };
    if !events.is_empty() {
        json::key(&mut out, "span.events");
        json::open(&mut out, b'[');
        for event in events.iter() {
            let Some(at) = stamp(wide(&event.getattr(intern!(py, "time_ns"))?)?) else { return Ok(None) };
            json::item(&mut out);
            json::open(&mut out, b'{');
            json::key(&mut out, "name");
            if !attr(&mut out, &event, intern!(py, "name"))? {
                return Ok(None);
            }
            json::key(&mut out, "time");
            write_stamp(&mut out, &at);
            json::key(&mut out, "attributes");
            if !json::flat_map(&mut out, &event.getattr(intern!(py, "attributes"))?)? {
                return Ok(None);
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    let Some(links) = tuple_field(span, intern!(py, "links"))? else { return Ok(None) };
    if !links.is_empty() {
        json::key(&mut out, "span.links");
        json::open(&mut out, b'[');
        for link in links.iter() {
            json::item(&mut out);
            json::open(&mut out, b'{');
            json::key(&mut out, "trace.id");
            if !attr(&mut out, &link, intern!(py, "trace_id"))? {
                return Ok(None);
            }
            json::key(&mut out, "span.id");
            if !attr(&mut out, &link, intern!(py, "span_id"))? {
                return Ok(None);
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    let Some(flags) = tuple_field(span, intern!(py, "flags"))? else { return Ok(None) };
    if !flags.is_empty() {
        json::key(&mut out, "hopscope.sanitized");
        if !json::value(&mut out, &flags)? {
            return Ok(None);
        }
    }
    for (field, name) in [
        (intern!(py, "original_start_ns"), "hopscope.original.start_ns"),
        (intern!(py, "original_end_ns"), "hopscope.original.end_ns"),
    ] {
        let value = span.getattr(field)?;
        if !value.is_none() {
            json::key(&mut out, name);
            if !json::py_string(&mut out, &value.str()?) {
                return Ok(None);
            }
        }
    }
    out.push(b'}');
    parts(py, &index, &id, &out)
}

/// `(index, body)` of `log`'s `logs` document under `prefix`, or None (module docstring).
#[pyfunction]
pub fn log_document<'py>(
    py: Python<'py>,
    log: &Bound<'py, PyAny>,
    prefix: &str,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let time = wide(&log.getattr(intern!(py, "time_ns"))?)?;
    if time < 0 {
        return Ok(None);
    }
    let Some(at) = timestamp(time) else { return Ok(None) };
    let index = daily_index(prefix, "logs", time);
    let Some(attributes) = flat(py, &log.getattr(intern!(py, "attributes"))?)? else { return Ok(None) };
    let Some(resource) = flat(py, &log.getattr(intern!(py, "resource"))?)? else { return Ok(None) };
    let Some(flags) = tuple_field(log, intern!(py, "flags"))? else { return Ok(None) };
    let body = PyDict::new(py);
    body.set_item(intern!(py, "@timestamp"), at)?;
    body.set_item(intern!(py, "trace.id"), log.getattr(intern!(py, "trace_id"))?)?;
    body.set_item(intern!(py, "span.id"), log.getattr(intern!(py, "span_id"))?)?;
    body.set_item(intern!(py, "service.name"), log.getattr(intern!(py, "service"))?)?;
    body.set_item(intern!(py, "service.node.name"), log.getattr(intern!(py, "node"))?)?;
    body.set_item(intern!(py, "log.level"), log.getattr(intern!(py, "severity"))?)?;
    body.set_item(intern!(py, "message"), log.getattr(intern!(py, "body"))?)?;
    body.set_item(intern!(py, "event.name"), log.getattr(intern!(py, "event_name"))?)?;
    body.set_item(intern!(py, "attributes"), attributes)?;
    body.set_item(intern!(py, "resource"), resource)?;
    if !flags.is_empty() {
        body.set_item(intern!(py, "hopscope.sanitized"), PyList::new(py, flags.iter())?)?;
    }
    let original = log.getattr(intern!(py, "original_time_ns"))?;
    if !original.is_none() {
        body.set_item(intern!(py, "hopscope.original.time_ns"), original.str()?)?;
    }
    Ok(Some(PyTuple::new(py, [PyString::new(py, &index).into_any(), body.into_any()])?))
}

/// What a derived record's document is made of (`schema.HOPS`, `schema.COORDINATION`): its
/// index kind, its own fields in the table's order (written under `namespace`), and the
/// envelope fields before them, each the position of one own field.
struct Derived {
    index: &'static str,
    namespace: &'static str,
    fields: &'static [&'static str],
    time: usize,
    trace_id: usize,
    local_id: usize,
    // (document field, own field) in the table's order, then a field made from one.
    envelope: &'static [(&'static str, usize)],
    last: Last,
}

/// The envelope's last field: hops an outcome, coordination delays the record's kind.
enum Last {
    Outcome(&'static str, usize),
    Constant(&'static str, &'static str),
}

const HOPS: Derived = Derived {
    index: "hops",
    namespace: "hopscope.hop",
    fields: &[
        "trace_id", "hop_id", "kind", "source_service", "source_node", "target_service",
        "target_node", "operation", "start_ns", "client_ns", "server_ns", "network_ns",
        "request_leg_ns", "response_leg_ns", "clock_skew_suspected", "adjusted_request_leg_ns",
        "adjusted_response_leg_ns", "queue_ns", "error", "attempt", "server_span_id",
        "client_abandoned",
    ],
    time: 8,
    trace_id: 0,
    local_id: 1,
    envelope: &[("trace.id", 0), ("span.id", 1), ("service.name", 3), ("service.node.name", 4),
                ("event.duration", 9)],
    last: Last::Outcome("event.outcome", 18),
};

const COORDINATION: Derived = Derived {
    index: "coordination",
    namespace: "hopscope.coordination",
    fields: &[
        "trace_id", "span_id", "parent_span_id", "name", "kind", "service", "node", "resource",
        "participant", "start_ns", "duration_ns", "critical_ns", "error",
    ],
    time: 9,
    trace_id: 0,
    local_id: 1,
    envelope: &[("trace.id", 0), ("span.id", 1), ("service.name", 5), ("service.node.name", 6),
                ("event.duration", 10)],
    last: Last::Constant("hopscope.record", "delay"),
};

// The attribute of each own field, per kind, made once.
static HOP_NAMES: GILOnceCell<Vec<Py<PyString>>> = GILOnceCell::new();
static COORDINATION_NAMES: GILOnceCell<Vec<Py<PyString>>> = GILOnceCell::new();


/// `schema.outcome`: ECS `event.outcome` of a failed flag.
fn outcome(failed: &Bound<'_, PyAny>) -> PyResult<&'static str> {
    Ok(if failed.is_none() {
        "unknown"
    } else if failed.is_truthy()? {
        "failure"
    } else {
        "success"
    })
}

/// `(index, id, source)` of a derived record's document, or None for a value the table would
/// convert or orjson would not write (`json.rs`), a negative time or one past year 9999.
fn derived_document<'py>(
    py: Python<'py>,
    kind: &Derived,
    names: &'static GILOnceCell<Vec<Py<PyString>>>,
    record: &Bound<'py, PyAny>,
    prefix: &str,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let names = names.get_or_init(py, || {
        kind.fields.iter().map(|name| PyString::intern(py, name).unbind()).collect()
    });
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let value = record.getattr(name.bind(py))?;
        if !json::scalar(&value) {
            return Ok(None);
        }
        values.push(value);
    }
    let start = &values[kind.time];
    if !start.is_exact_instance_of::<PyInt>() {
        return Ok(None);
    }
    let start_ns = wide(start)?;
    if start_ns < 0 {
        return Ok(None);
    }
    let Some(at) = stamp(start_ns) else { return Ok(None) };
    let index = stamp_index(prefix, kind.index, &at);
    let (trace_id, local_id) = (&values[kind.trace_id], &values[kind.local_id]);
    let Ok(local) = local_id.downcast::<PyString>() else { return Ok(None) };
    let Ok(local) = local.to_str() else { return Ok(None) };
    let id = if trace_id.is_none() {
        local.to_string()
    } else if let Ok(trace) = trace_id.downcast::<PyString>() {
        let Ok(trace) = trace.to_str() else { return Ok(None) };
        format!("{trace}-{local}")
    } else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(1024);
    out.push(b'{');
    json::key(&mut out, "@timestamp");
    write_stamp(&mut out, &at);
    for &(name, at) in kind.envelope {
        json::key(&mut out, name);
        if !json::value(&mut out, &values[at])? {
            return Ok(None);
        }
    }
    match kind.last {
        Last::Outcome(name, at) => {
            json::key(&mut out, name);
            json::string(&mut out, outcome(&values[at])?);
        }
        Last::Constant(name, value) => {
            json::key(&mut out, name);
            json::string(&mut out, value);
        }
    }
    for (name, value) in kind.fields.iter().zip(&values) {
        json::key_in(&mut out, kind.namespace, name);
        if !json::value(&mut out, value)? {
            return Ok(None);
        }
    }
    out.push(b'}');
    parts(py, &index, &id, &out)
}

/// `(index, id, body)` of `hop`'s document under `prefix`, or None (`derived_document`).
#[pyfunction]
pub fn hop_document<'py>(
    py: Python<'py>,
    hop: &Bound<'py, PyAny>,
    prefix: &str,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    derived_document(py, &HOPS, &HOP_NAMES, hop, prefix)
}

/// `(index, id, body)` of a coordination delay's document under `prefix`, or None.
#[pyfunction]
pub fn coordination_document<'py>(
    py: Python<'py>,
    delay: &Bound<'py, PyAny>,
    prefix: &str,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    derived_document(py, &COORDINATION, &COORDINATION_NAMES, delay, prefix)
}

/// The critical path's segment kinds (`critical_path.SEGMENT_KINDS`), in the table's order.
pub const SEGMENT_KINDS: [&str; 3] = ["self", "network", "coordination"];
/// Their entries' names in `critical_by_operation` (`schema._KIND_NS`), in the same order.
const SEGMENT_NS: [&str; 3] = ["self_ns", "network_ns", "coordination_ns"];

/// The summary's own fields in `schema.TRACES`' order (`hopscope.trace.<name>`): `TRACE_HEAD`
/// of them before the per-kind times, the rest after.
const TRACE_FIELDS: [&str; 16] = [
    "trace_id", "root_span_id", "root_service", "root_operation", "start_ns", "duration_ns",
    "extent_ns", "span_count", "services", "error", "root_error", "complete", "failover_count",
    "retry_count", "hop_count", "payment_id",
];
const TRACE_HEAD: usize = 12;
const TRACE_ID: usize = 0;
const ROOT_SPAN_ID: usize = 1;
const ROOT_SERVICE: usize = 2;
const START_NS: usize = 4;
const DURATION_NS: usize = 5;
const SERVICES: usize = 8;
const ERROR: usize = 9;
const PAYMENT_ID: usize = 15;

// The attribute of each of the summary's own fields, made once.
static TRACE_NAMES: GILOnceCell<Vec<Py<PyString>>> = GILOnceCell::new();

/// `value` when it is exactly a dict (the derivations' maps), else None.
fn exact_dict<'py>(value: Bound<'py, PyAny>) -> Option<Bound<'py, PyDict>> {
    if value.is_exact_instance_of::<PyDict>() {
        value.downcast_into::<PyDict>().ok()
    } else {
        None
    }
}

/// Whether `value` is one `schema._plain` writes as a list (a tuple or a list).
fn sequence(value: &Bound<'_, PyAny>) -> bool {
    value.is_exact_instance_of::<PyTuple>() || value.is_exact_instance_of::<PyList>()
}

/// `schema._critical_by_operation` as JSON: an entry per operation on the path, its exclusive
/// time and its split by segment kind; false where the table would write another value or
/// fail, or orjson would not write one.
fn critical_by_operation(out: &mut Vec<u8>, path: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = path.py();
    let Some(by_operation) = exact_dict(path.getattr(intern!(py, "by_operation"))?) else { return Ok(false) };
    let Some(by_operation_kind) = exact_dict(path.getattr(intern!(py, "by_operation_kind"))?) else {
        return Ok(false);
    };
    // (operation, its exclusive time, its time per segment kind), in the path's order.
    let mut entries = Vec::with_capacity(by_operation.len());
    let mut places = std::collections::HashMap::with_capacity(by_operation.len());
    for (operation, total) in by_operation.iter() {
        let Ok(name) = operation.downcast_exact::<PyString>() else { return Ok(false) };
        let Ok(name) = name.to_str() else { return Ok(false) };
        places.insert(name.to_string(), entries.len());
        entries.push((operation, total, [None, None, None]));
    }
    for (key, ns) in by_operation_kind.iter() {
        let Ok(key) = key.downcast_exact::<PyTuple>() else { return Ok(false) };
        if key.len() != 2 || !ns.is_exact_instance_of::<PyInt>() {
            return Ok(false);
        }
        let (operation, kind) = (key.get_item(0)?, key.get_item(1)?);
        let Ok(kind) = kind.downcast_exact::<PyString>() else { return Ok(false) };
        let Some(at) = SEGMENT_KINDS.iter().position(|k| kind.to_str().is_ok_and(|s| s == *k)) else {
            return Ok(false);
        };
        let Ok(operation) = operation.downcast_exact::<PyString>() else { return Ok(false) };
        let Ok(operation) = operation.to_str() else { return Ok(false) };
        let Some(&entry) = places.get(operation) else { return Ok(false) };
        // The table adds ns to the entry's 0; each (operation, kind) comes once.
        entries[entry].2[at] = Some(ns);
    }
    json::open(out, b'[');
    for (operation, total, by_kind) in &entries {
        json::item(out);
        json::open(out, b'{');
        json::key(out, "operation");
        if !json::value(out, operation)? {
            return Ok(false);
        }
        json::key(out, "exclusive_ns");
        if !json::value(out, total)? {
            return Ok(false);
        }
        for (name, ns) in SEGMENT_NS.iter().zip(by_kind) {
            json::key(out, name);
            match ns {
                Some(ns) => {
                    if !json::value(out, ns)? {
                        return Ok(false);
                    }
                }
                None => out.push(b'0'),
            }
        }
        out.push(b'}');
    }
    out.push(b']');
    Ok(true)
}

/// `(index, id, source)` of the `traces` document of a trace's `summary` and `critical_path`
/// under `prefix`, or None (module docstring).
#[pyfunction]
pub fn trace_document<'py>(
    py: Python<'py>,
    summary: &Bound<'py, PyAny>,
    critical_path: &Bound<'py, PyAny>,
    prefix: &str,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let names = TRACE_NAMES.get_or_init(py, || {
        TRACE_FIELDS.iter().map(|name| PyString::intern(py, name).unbind()).collect()
    });
    let mut values = Vec::with_capacity(names.len());
    for (at, name) in names.iter().enumerate() {
        let value = summary.getattr(name.bind(py))?;
        if if at == SERVICES { !sequence(&value) } else { !json::scalar(&value) } {
            return Ok(None);
        }
        values.push(value);
    }
    let start = &values[START_NS];
    if !start.is_exact_instance_of::<PyInt>() {
        return Ok(None);
    }
    let Ok(start_ns) = start.extract::<i64>() else { return Ok(None) };
    if start_ns < 0 {
        return Ok(None);
    }
    let start_ns = i128::from(start_ns);
    let Some(at) = stamp(start_ns) else { return Ok(None) };
    let Ok(trace_id) = values[TRACE_ID].downcast::<PyString>() else { return Ok(None) };
    let Ok(id) = trace_id.to_str() else { return Ok(None) };
    let Some(by_kind) = exact_dict(summary.getattr(intern!(py, "critical_by_kind"))?) else { return Ok(None) };
    let Some(by_service) = exact_dict(summary.getattr(intern!(py, "critical_by_service"))?) else {
        return Ok(None);
    };
    let anomalies = summary.getattr(intern!(py, "anomalies"))?;
    if !anomalies.is_none() && !sequence(&anomalies) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(2048);
    out.push(b'{');
    json::key(&mut out, "@timestamp");
    write_stamp(&mut out, &at);
    json::key(&mut out, "trace.id");
    let mut written = json::value(&mut out, &values[TRACE_ID])?;
    json::key(&mut out, "span.id");
    written &= json::value(&mut out, &values[ROOT_SPAN_ID])?;
    json::key(&mut out, "service.name");
    written &= json::value(&mut out, &values[ROOT_SERVICE])?;
    json::key(&mut out, "event.duration");
    written &= json::value(&mut out, &values[DURATION_NS])?;
    json::key(&mut out, "event.outcome");
    json::string(&mut out, outcome(&values[ERROR])?);
    json::key(&mut out, "payment.id");
    written &= json::value(&mut out, &values[PAYMENT_ID])?;
    for (name, value) in TRACE_FIELDS[..TRACE_HEAD].iter().zip(&values) {
        json::key_in(&mut out, "hopscope.trace", name);
        written &= json::value(&mut out, value)?;
    }
    for kind in SEGMENT_KINDS {
        // `critical_by_kind.get(kind, 0)`, written as it is.
        json::key_in(&mut out, "hopscope.trace.critical_by_kind", kind);
        match by_kind.get_item(kind)? {
            Some(value) => {
                if !json::scalar(&value) {
                    return Ok(None);
                }
                written &= json::value(&mut out, &value)?;
            }
            None => out.push(b'0'),
        }
    }
    for (name, value) in TRACE_FIELDS[TRACE_HEAD..].iter().zip(&values[TRACE_HEAD..]) {
        json::key_in(&mut out, "hopscope.trace", name);
        written &= json::value(&mut out, value)?;
    }
    if !anomalies.is_none() && anomalies.len()? > 0 {
        json::key(&mut out, "hopscope.sanitized");
        written &= json::value(&mut out, &anomalies)?;
    }
    json::key(&mut out, "hopscope.trace.critical_by_operation");
    if !written || !critical_by_operation(&mut out, critical_path)? {
        return Ok(None);
    }
    json::key(&mut out, "hopscope.trace.critical_by_service");
    json::open(&mut out, b'[');
    for (service, ns) in by_service.iter() {
        json::item(&mut out);
        json::open(&mut out, b'{');
        json::key(&mut out, "service");
        if !json::value(&mut out, &service)? {
            return Ok(None);
        }
        json::key(&mut out, "exclusive_ns");
        if !json::value(&mut out, &ns)? {
            return Ok(None);
        }
        out.push(b'}');
    }
    out.push(b']');
    out.push(b'}');
    let index = stamp_index(prefix, "traces", &at);
    parts(py, &index, id, &out)
}
