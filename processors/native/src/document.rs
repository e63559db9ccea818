//! A span's `spans` document, as `hopscope.processors.schema.SPANS` writes it: the index, the id
//! and the body, fields in the table's order. Read from the record (after the processors'
//! semantic-convention inference), so it serves every span whichever core decoded it. A span
//! this does not write the table's way (a time past year 9999, which the table fails on, or an
//! attribute value of a type the decoders never produce) returns None: the table writes it.
//!
//! A hop's `hops` document (`schema.HOPS`) and a coordination delay's (`schema.COORDINATION`):
//! the derivations in Python compute the records, this writes their documents; a field of a
//! type the table would convert returns None.
//!
//! A log record's `logs` document likewise (`schema.LOGS`): its index and body; the id, a hash
//! of the body's JSON, is taken by the caller, which hashes whichever body it gets the same way.

use pyo3::intern;
use pyo3::sync::GILOnceCell;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

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

/// `schema.timestamp`: nanosecond ISO 8601 in UTC; None past year 9999.
fn timestamp(time_ns: i128) -> Option<String> {
    let time_ns = time_ns.max(0);
    let (seconds, nanos) = (time_ns / NS, time_ns % NS);
    let (days, rest) = (seconds / DAY_S, seconds % DAY_S);
    let (year, month, day) = civil(days);
    if year > 9999 {
        return None;
    }
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    ))
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

/// `(index, id, body)` as the Python side unpacks it.
fn parts<'py>(
    py: Python<'py>,
    index: &str,
    id: &str,
    body: Bound<'py, PyDict>,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let items = [PyString::new(py, index).into_any(), PyString::new(py, id).into_any(), body.into_any()];
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

#[pyfunction]
pub fn span_document<'py>(
    py: Python<'py>,
    span: &Bound<'py, PyAny>,
    prefix: &str,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let start: i128 = span.getattr(intern!(py, "start_ns"))?.extract()?;
    let end: i128 = span.getattr(intern!(py, "end_ns"))?.extract()?;
    let Some(at) = timestamp(start) else { return Ok(None) };
    if start < 0 {
        return Ok(None);
    }
    let index = daily_index(prefix, "spans", start);
    let trace_id = span.getattr(intern!(py, "trace_id"))?;
    let span_id = span.getattr(intern!(py, "span_id"))?;
    let (Ok(trace), Ok(local)) = (trace_id.downcast::<PyString>(), span_id.downcast::<PyString>()) else {
        return Ok(None);
    };
    let id = format!("{}-{}", trace.to_str()?, local.to_str()?);
    let Some(attributes) = flat(py, &span.getattr(intern!(py, "attributes"))?)? else { return Ok(None) };
    let Some(resource) = flat(py, &span.getattr(intern!(py, "resource"))?)? else { return Ok(None) };
    let body = PyDict::new(py);
    body.set_item(intern!(py, "@timestamp"), at)?;
    body.set_item(intern!(py, "trace.id"), trace_id)?;
    body.set_item(intern!(py, "span.id"), span_id)?;
    body.set_item(intern!(py, "parent.id"), span.getattr(intern!(py, "parent_id"))?)?;
    body.set_item(intern!(py, "service.name"), span.getattr(intern!(py, "service"))?)?;
    body.set_item(intern!(py, "service.node.name"), span.getattr(intern!(py, "node"))?)?;
    body.set_item(intern!(py, "span.name"), span.getattr(intern!(py, "name"))?)?;
    body.set_item(intern!(py, "span.kind"), span.getattr(intern!(py, "kind"))?)?;
    body.set_item(intern!(py, "event.duration"), LONG_MAX.min((end - start).max(0)))?;
    let status = span.getattr(intern!(py, "status"))?;
    let failed = status.downcast::<PyString>().is_ok_and(|s| s.to_str().is_ok_and(|s| s == "error"));
    body.set_item(intern!(py, "event.outcome"), if failed { "failure" } else { "success" })?;
    body.set_item(intern!(py, "span.status.message"), span.getattr(intern!(py, "status_message"))?)?;
    body.set_item(intern!(py, "attributes"), attributes)?;
    body.set_item(intern!(py, "resource"), resource)?;
    let Some(events) = tuple_field(span, intern!(py, "events"))? else { return Ok(None) };
    if !events.is_empty() {
        let list = PyList::empty(py);
        for event in events.iter() {
            let Some(at) = timestamp(event.getattr(intern!(py, "time_ns"))?.extract()?) else { return Ok(None) };
            let Some(attrs) = flat(py, &event.getattr(intern!(py, "attributes"))?)? else { return Ok(None) };
            let item = PyDict::new(py);
            item.set_item(intern!(py, "name"), event.getattr(intern!(py, "name"))?)?;
            item.set_item(intern!(py, "time"), at)?;
            item.set_item(intern!(py, "attributes"), attrs)?;
            list.append(item)?;
        }
        body.set_item(intern!(py, "span.events"), list)?;
    }
    let Some(links) = tuple_field(span, intern!(py, "links"))? else { return Ok(None) };
    if !links.is_empty() {
        let list = PyList::empty(py);
        for link in links.iter() {
            let item = PyDict::new(py);
            item.set_item(intern!(py, "trace.id"), link.getattr(intern!(py, "trace_id"))?)?;
            item.set_item(intern!(py, "span.id"), link.getattr(intern!(py, "span_id"))?)?;
            list.append(item)?;
        }
        body.set_item(intern!(py, "span.links"), list)?;
    }
    let Some(flags) = tuple_field(span, intern!(py, "flags"))? else { return Ok(None) };
    if !flags.is_empty() {
        body.set_item(intern!(py, "hopscope.sanitized"), PyList::new(py, flags.iter())?)?;
    }
    for (field, name) in [
        (intern!(py, "original_start_ns"), intern!(py, "hopscope.original.start_ns")),
        (intern!(py, "original_end_ns"), intern!(py, "hopscope.original.end_ns")),
    ] {
        let value = span.getattr(field)?;
        if !value.is_none() {
            body.set_item(name, value.str()?)?;
        }
    }
    parts(py, &index, &id, body)
}

/// `(index, body)` of `log`'s `logs` document under `prefix`, or None (module docstring).
#[pyfunction]
pub fn log_document<'py>(
    py: Python<'py>,
    log: &Bound<'py, PyAny>,
    prefix: &str,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let time: i128 = log.getattr(intern!(py, "time_ns"))?.extract()?;
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

// (attribute, document field) of each own field, per kind, made once.
static HOP_NAMES: GILOnceCell<Vec<(Py<PyString>, Py<PyString>)>> = GILOnceCell::new();
static COORDINATION_NAMES: GILOnceCell<Vec<(Py<PyString>, Py<PyString>)>> = GILOnceCell::new();

/// Whether the table writes `value` as it is (`schema._plain` leaves it alone).
fn scalar(value: &Bound<'_, PyAny>) -> bool {
    value.is_none()
        || value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyInt>()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_exact_instance_of::<PyFloat>()
}

/// `(index, id, body)` of a derived record's document, or None for a value the table would
/// convert, a negative time or one past year 9999.
fn derived_document<'py>(
    py: Python<'py>,
    kind: &Derived,
    names: &'static GILOnceCell<Vec<(Py<PyString>, Py<PyString>)>>,
    record: &Bound<'py, PyAny>,
    prefix: &str,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let names = names.get_or_init(py, || {
        kind.fields
            .iter()
            .map(|name| {
                (PyString::intern(py, name).unbind(),
                 PyString::intern(py, &format!("{}.{name}", kind.namespace)).unbind())
            })
            .collect()
    });
    let mut values = Vec::with_capacity(names.len());
    for (name, _) in names {
        let value = record.getattr(name.bind(py))?;
        if !scalar(&value) {
            return Ok(None);
        }
        values.push(value);
    }
    let start = &values[kind.time];
    if !start.is_exact_instance_of::<PyInt>() {
        return Ok(None);
    }
    let start_ns: i128 = start.extract()?;
    if start_ns < 0 {
        return Ok(None);
    }
    let Some(at) = timestamp(start_ns) else { return Ok(None) };
    let index = daily_index(prefix, kind.index, start_ns);
    let (trace_id, local_id) = (&values[kind.trace_id], &values[kind.local_id]);
    let Ok(local) = local_id.downcast::<PyString>() else { return Ok(None) };
    let id = if trace_id.is_none() {
        local.to_str()?.to_string()
    } else if let Ok(trace) = trace_id.downcast::<PyString>() {
        format!("{}-{}", trace.to_str()?, local.to_str()?)
    } else {
        return Ok(None);
    };
    let body = PyDict::new(py);
    body.set_item(intern!(py, "@timestamp"), at)?;
    for &(name, at) in kind.envelope {
        body.set_item(PyString::intern(py, name), &values[at])?;
    }
    match kind.last {
        Last::Outcome(name, at) => {
            let error = &values[at];
            let outcome = if error.is_none() {
                "unknown"
            } else if error.is_truthy()? {
                "failure"
            } else {
                "success"
            };
            body.set_item(PyString::intern(py, name), outcome)?;
        }
        Last::Constant(name, value) => body.set_item(PyString::intern(py, name), value)?,
    }
    for ((_, name), value) in names.iter().zip(&values) {
        body.set_item(name.bind(py), value)?;
    }
    parts(py, &index, &id, body)
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
