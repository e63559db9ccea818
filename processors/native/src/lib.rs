//! hopscope's native per-span core: OTLP protobuf requests to the processors' span and log
//! records, card numbers masked, limits applied, exactly as `hopscope.processors.decode` (the
//! readable reference) builds them.
//!
//! A message this core does not decode the reference's way returns None and the reference
//! decodes it: OTLP/JSON, anything the protobuf runtime would reject or parse leniently,
//! rejected spans (their dead-letter payload is the runtime's serialisation), an attribute map
//! past its count, text budget or key rules. Everything else (card numbers in every shape,
//! truncation, depth, non-finite doubles, ids, kinds, inferred errors, implausible times) is
//! done here, and the differential test holds both to the same records.

mod coordination;
mod critical;
mod document;
mod footprint;
mod hops;
mod index;
mod json;
mod mask;
mod summary;
mod wire;

use std::collections::BTreeSet;

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::ffi;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString, PyTuple, PyType};

use wire::{Any, Bail, KeyValue};

// Flags (hopscope.processors.sanitize reason codes).
const VALUE_TRUNCATED: &str = "value_truncated";
const NON_FINITE_NUMBER: &str = "non_finite_number";
const INVALID_PARENT_ID: &str = "invalid_parent_id";
const INVALID_TRACE_ID: &str = "invalid_trace_id";
const END_BEFORE_START: &str = "end_before_start";
const KIND_UNSPECIFIED: &str = "kind_unspecified";
const STATUS_INFERRED: &str = "status_inferred";
const EVENTS_DROPPED: &str = "events_dropped";
const LINKS_DROPPED: &str = "links_dropped";
const TIMESTAMP_OUT_OF_RANGE: &str = "timestamp_out_of_range";

const ENTRY_COST: i64 = 64;
const MASK_SLACK: usize = 80;
const EARLIEST_NS: i128 = 946_684_800_000_000_000;
const LATEST_NS: i128 = (1i128 << 63) - 1;
const FLOAT_EXACT: f64 = 9_007_199_254_740_992.0; // 2**53
const ELLIPSIS: &str = "\u{2026}";
const KINDS: [&str; 6] = ["internal", "internal", "server", "client", "producer", "consumer"];
// Attributes that make the reference look for another exporter's error convention.
const ERROR_KEYS: [&str; 4] =
    ["error", "http.response.status_code", "http.status_code", "rpc.grpc.status_code"];

/// A frozen, slotted dataclass without `__post_init__` (the records): built as its `__init__`
/// builds it, one slot at a time, without the Python-level `__init__` call.
struct RecordClass {
    class: Py<PyType>,
    fields: Vec<Py<PyString>>,
}

impl RecordClass {
    fn new(py: Python<'_>, class: &Bound<'_, PyAny>, expected: usize) -> PyResult<Self> {
        let fields: Vec<Py<PyString>> = class
            .getattr("__dataclass_fields__")?
            .downcast_into::<PyDict>()?
            .keys()
            .iter()
            .map(|key| Ok(key.downcast_into::<PyString>()?.unbind()))
            .collect::<PyResult<_>>()?;
        if fields.len() != expected || class.hasattr("__post_init__")? {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "{class} has {} fields (expected {expected}) or a __post_init__: the native core \
                 does not build it",
                fields.len()
            )));
        }
        let _ = py;
        Ok(RecordClass { class: class.downcast::<PyType>()?.clone().unbind(), fields })
    }

    fn build<const N: usize>(&self, py: Python<'_>, values: [PyObject; N]) -> PyResult<PyObject> {
        debug_assert_eq!(N, self.fields.len());
        // SAFETY: a heap type's generic allocation (what object.__new__ does for a class
        // without __new__), then each slot set through the generic setter (what the frozen
        // dataclass's __init__ does through object.__setattr__).
        unsafe {
            let raw = ffi::PyType_GenericAlloc(self.class.as_ptr().cast::<ffi::PyTypeObject>(), 0);
            let object = PyObject::from_owned_ptr_or_err(py, raw)?;
            for (name, value) in self.fields.iter().zip(values) {
                if ffi::PyObject_GenericSetAttr(object.as_ptr(), name.as_ptr(), value.as_ptr()) != 0 {
                    return Err(PyErr::fetch(py));
                }
            }
            Ok(object)
        }
    }
}

/// The Python side: record classes and the functions whose results are taken as they are.
struct Context {
    span: RecordClass,
    event: RecordClass,
    link: RecordClass,
    log: RecordClass,
    error_status: PyObject,
    dumps: PyObject,
}

static CONTEXT: GILOnceCell<Context> = GILOnceCell::new();

/// Hand the core the record classes, `foreign.error_status` and `json.dumps`.
#[pyfunction]
fn configure(
    py: Python<'_>,
    span: &Bound<'_, PyAny>,
    event: &Bound<'_, PyAny>,
    link: &Bound<'_, PyAny>,
    log: &Bound<'_, PyAny>,
    error_status: PyObject,
    dumps: PyObject,
) -> PyResult<()> {
    let context = Context {
        span: RecordClass::new(py, span, 18)?,
        event: RecordClass::new(py, event, 3)?,
        link: RecordClass::new(py, link, 3)?,
        log: RecordClass::new(py, log, 12)?,
        error_status,
        dumps,
    };
    let _ = CONTEXT.set(py, context);
    Ok(())
}

fn context(py: Python<'_>) -> PyResult<&Context> {
    CONTEXT
        .get(py)
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("hopscope_native.configure was not called"))
}

/// `sanitize.Limits`, as the tuple the Python side passes.
#[derive(Clone, Copy)]
struct Limits {
    value: usize,
    name: usize,
    key: usize,
    attributes: usize,
    attribute_chars: i64,
    events: usize,
    links: usize,
    depth: usize,
    future: i128,
}

/// Why a message is not decoded here: the reference decodes it, or a Python error.
enum Stop {
    Reference,
    Python(PyErr),
}

impl From<Bail> for Stop {
    fn from(_: Bail) -> Self {
        Stop::Reference
    }
}

impl From<std::convert::Infallible> for Stop {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl From<PyErr> for Stop {
    fn from(error: PyErr) -> Self {
        Stop::Python(error)
    }
}

type Built<T> = Result<T, Stop>;

/// What a Python entry point returns for `built`: None where the reference must run.
fn or_reference<T>(built: Built<T>) -> PyResult<Option<T>> {
    match built {
        Ok(value) => Ok(Some(value)),
        Err(Stop::Reference) => Ok(None),
        Err(Stop::Python(error)) => Err(error),
    }
}

/// What one record may still hold and what was changed in it (`decode._Budget`).
struct Budget {
    limits: Limits,
    chars: i64,
    flags: BTreeSet<&'static str>,
}

impl Budget {
    fn new(limits: Limits, flags: &BTreeSet<&'static str>) -> Self {
        Budget { limits, chars: limits.attribute_chars, flags: flags.clone() }
    }

    fn flags<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.flags.iter())
    }
}

fn chars(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    }
}

/// The first `n` characters of `text`.
fn head(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

fn masked(text: &str) -> std::borrow::Cow<'_, str> {
    match mask::mask(text.as_bytes()) {
        // Only ASCII digits became '*': still UTF-8.
        Some(bytes) => std::borrow::Cow::Owned(String::from_utf8(bytes).expect("masking keeps UTF-8")),
        None => std::borrow::Cow::Borrowed(text),
    }
}

/// `decode._string`: masked, and cut to `limit` characters (the head masked with a margin).
fn string_within(text: &str, budget: &mut Budget, limit: usize) -> String {
    if text.len() <= limit || chars(text) <= limit {
        return masked(text).into_owned();
    }
    budget.flags.insert(VALUE_TRUNCATED);
    head(&masked(head(text, limit + MASK_SLACK)), limit).to_string()
}

fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(TABLE[(n >> 18) as usize & 63] as char);
        out.push(TABLE[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { TABLE[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { TABLE[n as usize & 63] as char } else { '=' });
    }
    out
}

fn hex(raw: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(raw.len() * 2);
    for &b in raw {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// `decode._value`: an AnyValue as the reference's plain Python value.
fn value<'py>(py: Python<'py>, any: &Any<'_>, budget: &mut Budget, depth: usize) -> Built<PyObject> {
    Ok(match any {
        Any::Unset => py.None(),
        Any::Str(text) => {
            let out = string_within(text, budget, budget.limits.value);
            budget.chars -= chars(&out) as i64;
            PyString::new(py, &out).into_any().unbind()
        }
        Any::Bool(flag) => PyBool::new(py, *flag).to_owned().into_any().unbind(),
        Any::Int(number) => match mask::number_text(*number < 0, number.unsigned_abs()) {
            Some(text) => PyString::new(py, &text).into_any().unbind(),
            None => number.into_pyobject(py)?.into_any().unbind(),
        },
        Any::Double(number) => {
            let number = *number;
            if !number.is_finite() {
                budget.flags.insert(NON_FINITE_NUMBER);
                let text = if number.is_nan() {
                    "NaN"
                } else if number > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                return Ok(PyString::new(py, text).into_any().unbind());
            }
            if number.fract() == 0.0 && number.abs() < FLOAT_EXACT {
                let whole = number as i64;
                if let Some(text) = mask::number_text(whole < 0, whole.unsigned_abs()) {
                    return Ok(PyString::new(py, &text).into_any().unbind());
                }
            }
            PyFloat::new(py, number).into_any().unbind()
        }
        Any::Bytes(raw) => {
            let most = budget.limits.value * 3 / 4; // base64 grows by a third
            let kept: Vec<u8> = if raw.len() > most {
                budget.flags.insert(VALUE_TRUNCATED);
                let head = &raw[..(most + MASK_SLACK).min(raw.len())];
                let mut out = mask::mask(head).unwrap_or_else(|| head.to_vec());
                out.truncate(most);
                out
            } else {
                mask::mask(raw).unwrap_or_else(|| raw.to_vec())
            };
            let encoded = base64(&kept);
            budget.chars -= encoded.len() as i64;
            PyString::new(py, &encoded).into_any().unbind()
        }
        Any::Array(items) => {
            if depth >= budget.limits.depth {
                budget.flags.insert(VALUE_TRUNCATED);
                return Ok(PyString::new(py, ELLIPSIS).into_any().unbind());
            }
            let list = PyList::empty(py);
            for item in items {
                if budget.chars <= 0 {
                    return Err(Stop::Reference); // the reference cuts the array here
                }
                budget.chars -= ENTRY_COST / 4;
                list.append(value(py, item, budget, depth + 1)?)?;
            }
            list.into_any().unbind()
        }
        Any::Kvlist(values) => {
            if depth >= budget.limits.depth {
                budget.flags.insert(VALUE_TRUNCATED);
                return Ok(PyString::new(py, ELLIPSIS).into_any().unbind());
            }
            attribute_map(py, values, budget, depth + 1)?.into_any().unbind()
        }
    })
}

/// Whether the reference takes `key` as a field name as it is (not empty, not blank, within
/// the length limit). Keys made only of characters this cannot judge go to the reference.
fn plain_key(key: &str, limit: usize) -> Built<bool> {
    let n = chars(key);
    if n == 0 || n > limit {
        return Ok(false);
    }
    if key.chars().any(|c| c.is_alphanumeric() || ('!'..='~').contains(&c)) {
        return Ok(true);
    }
    Err(Stop::Reference)
}

/// `decode._attributes`, its common case: within the count, the text budget and the key
/// rules; anything else goes to the reference (`_checked_attributes`).
fn attribute_map<'py>(
    py: Python<'py>,
    key_values: &[KeyValue<'_>],
    budget: &mut Budget,
    depth: usize,
) -> Built<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    if key_values.is_empty() {
        return Ok(out);
    }
    if key_values.len() > budget.limits.attributes {
        return Err(Stop::Reference);
    }
    for kv in key_values {
        let item = value(py, &kv.value, budget, depth)?;
        out.set_item(PyString::new(py, kv.key), item)?;
    }
    let mut cost = 0i64;
    for key in out.keys() {
        let key = key.downcast_into::<PyString>().map_err(PyErr::from)?;
        let text = key.to_str()?;
        if !plain_key(text, budget.limits.key)? {
            return Err(Stop::Reference);
        }
        cost += chars(text) as i64 + ENTRY_COST;
    }
    budget.chars -= cost;
    if budget.chars <= 0 {
        return Err(Stop::Reference);
    }
    Ok(out)
}

/// `decode._identity`: a resource's attributes, service, node and flags.
struct Identity<'py> {
    resource: Bound<'py, PyDict>,
    service: Bound<'py, PyString>,
    node: PyObject,
    flags: BTreeSet<&'static str>,
}

fn clip<'py>(py: Python<'py>, text: &Bound<'py, PyString>, limit: usize) -> PyResult<Bound<'py, PyString>> {
    let s = text.to_str()?;
    if s.len() <= limit || chars(s) <= limit {
        return Ok(text.clone());
    }
    Ok(PyString::new(py, head(s, limit)))
}

fn identity<'py>(py: Python<'py>, key_values: &[KeyValue<'_>], limits: Limits) -> Built<Identity<'py>> {
    let mut budget = Budget::new(limits, &BTreeSet::new());
    let resource = attribute_map(py, key_values, &mut budget, 0)?;
    let service = match resource.get_item("service.name")? {
        Some(name) if name.is_truthy()? => name.str()?,
        _ => PyString::new(py, "unknown_service"),
    };
    let node = match resource.get_item("service.instance.id")? {
        Some(node) if !node.is_none() => clip(py, &node.str()?, limits.name)?.into_any().unbind(),
        _ => py.None(),
    };
    Ok(Identity { service: clip(py, &service, limits.name)?, resource, node, flags: budget.flags })
}

fn window(received: i128, limits: Limits) -> (i128, i128) {
    (EARLIEST_NS, LATEST_NS.min(received + limits.future))
}

fn span_record<'py>(
    py: Python<'py>,
    ctx: &Context,
    span: &wire::Span<'_>,
    who: &Identity<'py>,
    limits: Limits,
    received: Option<i128>,
) -> Built<PyObject> {
    let mut budget = Budget::new(limits, &who.flags);
    let name = string_within(span.name, &mut budget, limits.name);
    let attributes = attribute_map(py, &span.attributes, &mut budget, 0)?;
    let parent: PyObject = if span.parent_id.is_empty() || span.parent_id.iter().all(|&b| b == 0) && span.parent_id.len() == 8 {
        py.None()
    } else if span.parent_id.len() == 8 {
        PyString::new(py, &hex(span.parent_id)).into_any().unbind()
    } else {
        budget.flags.insert(INVALID_PARENT_ID);
        let text = hex(span.parent_id);
        PyString::new(py, &text[..text.len().min(64)]).into_any().unbind()
    };
    let mut status_message: Option<String> = if span.status_message.is_empty() {
        None
    } else {
        Some(string_within(span.status_message, &mut budget, limits.value))
    };
    if span.end < span.start {
        budget.flags.insert(END_BEFORE_START);
    }
    if span.kind == 0 {
        budget.flags.insert(KIND_UNSPECIFIED);
    }
    // Events.
    let mut event_names: Vec<String> = Vec::new();
    let events = PyList::empty(py);
    let mut span_events = &span.events[..];
    if span_events.len() > limits.events {
        budget.flags.insert(EVENTS_DROPPED);
        span_events = &span_events[..limits.events];
    }
    for event in span_events {
        let name = string_within(event.name, &mut budget, limits.name);
        let attrs = attribute_map(py, &event.attributes, &mut budget, 0)?;
        events.append(ctx.event.build(py, [
            PyString::new(py, &name).into_any().unbind(),
            event.time.into_pyobject(py)?.into_any().unbind(),
            attrs.into_any().unbind(),
        ])?)?;
        event_names.push(name);
    }
    let events = PyTuple::new(py, events.iter())?;
    // Status, with another exporter's error convention when the status is unset.
    let mut status = match span.status_code {
        1 => "ok",
        2 => "error",
        _ => "unset",
    };
    let mut status_obj: Option<PyObject> = None;
    let mut message_obj: PyObject = match &status_message {
        Some(text) => PyString::new(py, text).into_any().unbind(),
        None => py.None(),
    };
    if status == "unset"
        && (span.attributes.iter().any(|kv| ERROR_KEYS.contains(&kv.key))
            || event_names.iter().any(|name| name == "exception"))
    {
        let result = ctx.error_status.call1(py, (status, message_obj.clone_ref(py), &attributes, &events))?;
        let (new_status, new_message, inferred): (PyObject, PyObject, bool) = result.extract(py)?;
        if inferred {
            budget.flags.insert(STATUS_INFERRED);
        }
        status_obj = Some(new_status);
        message_obj = new_message;
        status_message = None;
        status = "";
    }
    let _ = status_message;
    // Links (ids of the wrong length are kept, bounded: links are not indexed).
    let links = PyList::empty(py);
    let mut span_links = &span.links[..];
    if span_links.len() > limits.links {
        budget.flags.insert(LINKS_DROPPED);
        span_links = &span_links[..limits.links];
    }
    for link in span_links {
        let trace = hex(link.trace_id);
        let id = hex(link.span_id);
        let attrs = attribute_map(py, &link.attributes, &mut budget, 0)?;
        links.append(ctx.link.build(py, [
            PyString::new(py, &trace[..trace.len().min(64)]).into_any().unbind(),
            PyString::new(py, &id[..id.len().min(64)]).into_any().unbind(),
            attrs.into_any().unbind(),
        ])?)?;
    }
    let links = PyTuple::new(py, links.iter())?;
    // Implausible times (sanitize.check_span_times).
    let (mut start, mut end) = (i128::from(span.start), i128::from(span.end));
    let mut original: (PyObject, PyObject) = (py.None(), py.None());
    if let Some(received) = received {
        let (low, high) = window(received, limits);
        let start_ok = low <= start && start <= high;
        let end_ok = low <= end && end <= high;
        if !(start_ok && end_ok) {
            original = (
                span.start.into_pyobject(py)?.into_any().unbind(),
                span.end.into_pyobject(py)?.into_any().unbind(),
            );
            let at = if start_ok {
                start
            } else if end_ok {
                end
            } else {
                received
            };
            start = at;
            end = at;
            budget.flags.remove(END_BEFORE_START);
            budget.flags.insert(TIMESTAMP_OUT_OF_RANGE);
        }
    }
    let status_value: PyObject = match status_obj {
        Some(obj) => obj,
        None => PyString::new(py, status).into_any().unbind(),
    };
    let kind = KINDS.get(span.kind as usize).copied().filter(|_| span.kind >= 0).unwrap_or("internal");
    Ok(ctx.span.build(
        py,
        [
            PyString::new(py, &hex(span.trace_id)).into_any().unbind(),
            PyString::new(py, &hex(span.span_id)).into_any().unbind(),
            parent,
            PyString::new(py, &name).into_any().unbind(),
            PyString::new(py, kind).into_any().unbind(),
            start.into_pyobject(py)?.into_any().unbind(),
            end.into_pyobject(py)?.into_any().unbind(),
            who.service.clone().into_any().unbind(),
            who.node.clone_ref(py),
            status_value,
            message_obj,
            attributes.into_any().unbind(),
            events.into_any().unbind(),
            links.into_any().unbind(),
            who.resource.clone().into_any().unbind(),
            budget.flags(py)?.into_any().unbind(),
            original.0,
            original.1,
        ],
    )?)
}

fn limits_of(raw: (usize, usize, usize, usize, i64, usize, usize, usize, i128)) -> Limits {
    let (value, name, key, attributes, attribute_chars, events, links, depth, future) = raw;
    Limits { value, name, key, attributes, attribute_chars, events, links, depth, future }
}

type RawLimits = (usize, usize, usize, usize, i64, usize, usize, usize, i128);

/// The spans of one `ExportTraceServiceRequest` as `SpanRecord`s, or None when the reference
/// must decode the message (module docstring).
#[pyfunction]
#[pyo3(signature = (payload, received_ns, limits))]
fn decode_spans<'py>(
    py: Python<'py>,
    payload: &[u8],
    received_ns: Option<i128>,
    limits: RawLimits,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let limits = limits_of(limits);
    let ctx = context(py)?;
    let built = (|| -> Built<Bound<'py, PyList>> {
        if payload.first() == Some(&b'{') {
            return Err(Stop::Reference);
        }
        let request = wire::request(payload, wire::span)?;
        let out = PyList::empty(py);
        for resource in &request {
            let who = identity(py, &resource.attributes, limits)?;
            for span in &resource.records {
                let bad_trace = span.trace_id.len() != 16 || span.trace_id.iter().all(|&b| b == 0);
                let bad_span = span.span_id.len() != 8 || span.span_id.iter().all(|&b| b == 0);
                if bad_trace || bad_span {
                    return Err(Stop::Reference); // rejected alone, with the runtime's bytes
                }
                out.append(span_record(py, ctx, span, &who, limits, received_ns)?)?;
            }
        }
        if out.is_empty() {
            return Err(Stop::Reference); // the reference's "empty traces message"
        }
        Ok(out)
    })();
    or_reference(built)
}

const SEVERITIES: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

fn optional_id<'py>(py: Python<'py>, raw: &[u8], width: usize, budget: &mut Budget) -> PyObject {
    if raw.is_empty() || (raw.len() == width && raw.iter().all(|&b| b == 0)) {
        return py.None();
    }
    if raw.len() != width {
        budget.flags.insert(INVALID_TRACE_ID);
        return py.None();
    }
    PyString::new(py, &hex(raw)).into_any().unbind()
}

fn log_record<'py>(
    py: Python<'py>,
    ctx: &Context,
    log: &wire::Log<'_>,
    who: &Identity<'py>,
    limits: Limits,
    received: Option<i128>,
) -> Built<PyObject> {
    let mut budget = Budget::new(limits, &who.flags);
    let attributes = attribute_map(py, &log.attributes, &mut budget, 0)?;
    let event_name: Option<Bound<'py, PyString>> = if !log.event_name.is_empty() {
        Some(PyString::new(py, &masked(log.event_name)))
    } else {
        match attributes.get_item("event.name")? {
            Some(found) if found.is_truthy()? => Some(found.str()?),
            _ => None,
        }
    };
    let severity: PyObject = if !log.severity_text.is_empty() {
        clip(py, &PyString::new(py, log.severity_text), limits.name)?.into_any().unbind()
    } else if (1..=24).contains(&log.severity_number) {
        PyString::new(py, SEVERITIES[((log.severity_number - 1) / 4) as usize]).into_any().unbind()
    } else {
        py.None()
    };
    let body = match log.body {
        Some(raw) => wire::any_value(raw)?,
        None => Any::Unset,
    };
    let plain = value(py, &body, &mut budget, 0)?;
    let plain = plain.bind(py);
    let body_text: Bound<'py, PyString> = if plain.is_none() {
        PyString::new(py, "")
    } else if let Ok(text) = plain.downcast::<PyString>() {
        text.clone()
    } else {
        let kwargs = PyDict::new(py);
        kwargs.set_item("sort_keys", true)?;
        kwargs.set_item("default", py.get_type::<PyString>())?;
        let text = ctx.dumps.bind(py).call((plain,), Some(&kwargs))?.downcast_into::<PyString>().map_err(PyErr::from)?;
        if chars(text.to_str()?) > limits.value {
            return Err(Stop::Reference);
        }
        text
    };
    let trace_id = optional_id(py, log.trace_id, 16, &mut budget);
    let span_id = optional_id(py, log.span_id, 8, &mut budget);
    let event_name: PyObject = match event_name {
        Some(name) => clip(py, &name, limits.name)?.into_any().unbind(),
        None => py.None(),
    };
    let observed = i128::from(log.observed);
    let mut time = if log.time != 0 { i128::from(log.time) } else { observed };
    let mut original: PyObject = py.None();
    if let Some(received) = received {
        let (low, high) = window(received, limits);
        if !(low <= time && time <= high) {
            original = time.into_pyobject(py)?.into_any().unbind();
            time = if low <= observed && observed <= high { observed } else { received };
            budget.flags.insert(TIMESTAMP_OUT_OF_RANGE);
        }
    }
    Ok(ctx.log.build(
        py,
        [
            time.into_pyobject(py)?.into_any().unbind(),
            who.service.clone().into_any().unbind(),
            who.node.clone_ref(py),
            severity,
            body_text.into_any().unbind(),
            trace_id,
            span_id,
            event_name,
            attributes.into_any().unbind(),
            who.resource.clone().into_any().unbind(),
            budget.flags(py)?.into_any().unbind(),
            original,
        ],
    )?)
}

/// The log records of one `ExportLogsServiceRequest` as `LogRecord`s, or None when the
/// reference must decode the message.
#[pyfunction]
#[pyo3(signature = (payload, received_ns, limits))]
fn decode_logs<'py>(
    py: Python<'py>,
    payload: &[u8],
    received_ns: Option<i128>,
    limits: RawLimits,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let limits = limits_of(limits);
    let ctx = context(py)?;
    let built = (|| -> Built<Bound<'py, PyList>> {
        if payload.first() == Some(&b'{') {
            return Err(Stop::Reference);
        }
        let request = wire::request(payload, wire::log)?;
        let out = PyList::empty(py);
        for resource in &request {
            let who = identity(py, &resource.attributes, limits)?;
            for log in &resource.records {
                out.append(log_record(py, ctx, log, &who, limits, received_ns)?)?;
            }
        }
        if out.is_empty() {
            return Err(Stop::Reference);
        }
        Ok(out)
    })();
    or_reference(built)
}

/// `mask_pans` over text, for tests of the scan against the reference.
#[pyfunction]
fn mask_pans(text: &str) -> String {
    masked(text).into_owned()
}

#[pymodule]
fn hopscope_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_function(wrap_pyfunction!(decode_spans, m)?)?;
    m.add_function(wrap_pyfunction!(decode_logs, m)?)?;
    m.add_function(wrap_pyfunction!(mask_pans, m)?)?;
    m.add_function(wrap_pyfunction!(document::span_document, m)?)?;
    m.add_function(wrap_pyfunction!(document::log_document, m)?)?;
    m.add_function(wrap_pyfunction!(document::hop_document, m)?)?;
    m.add_function(wrap_pyfunction!(document::coordination_document, m)?)?;
    m.add_function(wrap_pyfunction!(document::trace_document, m)?)?;
    m.add("SEGMENT_KINDS", document::SEGMENT_KINDS.to_vec())?;
    m.add_function(wrap_pyfunction!(critical::critical_path, m)?)?;
    m.add_function(wrap_pyfunction!(hops::hops, m)?)?;
    m.add("HOP_KEYS", hops::KEYS.to_vec())?;
    m.add_function(wrap_pyfunction!(index::trace_index, m)?)?;
    m.add("INDEX_KEYS", index::KEYS.to_vec())?;
    m.add_function(wrap_pyfunction!(summary::summary_facts, m)?)?;
    m.add("SUMMARY_KEYS", summary::KEYS.to_vec())?;
    m.add_function(wrap_pyfunction!(coordination::coordination, m)?)?;
    m.add("COORDINATION_KEYS", coordination::KEYS.to_vec())?;
    m.add("TWO_PC_WORDS", coordination::TWO_PC.to_vec())?;
    m.add_function(wrap_pyfunction!(footprint::footprints, m)?)?;
    m.add("FOOTPRINT_BYTES", footprint::CONSTANTS.to_vec())?;
    Ok(())
}
