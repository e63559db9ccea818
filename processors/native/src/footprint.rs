//! `hopscope.processors.assembly.footprint` (the specification) for the spans of one message:
//! the estimated bytes each holds in memory, for the assembler's memory bounds and the
//! runtime's batch estimate. A span whose maps are not `dict`s returns None, and the
//! reference counts the message.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

// assembly.SPAN_BYTES, ATTRIBUTE_BYTES, EVENT_BYTES (`CONSTANTS` lets a test compare).
const SPAN_BYTES: usize = 700;
const ATTRIBUTE_BYTES: usize = 150;
const EVENT_BYTES: usize = 250;
pub const CONSTANTS: [usize; 3] = [SPAN_BYTES, ATTRIBUTE_BYTES, EVENT_BYTES];

/// Keys' lengths, and the lengths of the values that are exactly `str`, of `map`.
fn text_bytes(map: &Bound<'_, PyDict>) -> PyResult<usize> {
    let mut size = 0;
    for (key, value) in map.iter() {
        size += key.len()?;
        if value.is_exact_instance_of::<PyString>() {
            size += value.len()?;
        }
    }
    Ok(size)
}

/// `assembly._map_bytes`: 0 for what is not a non-empty `dict`.
fn map_bytes(values: &Bound<'_, PyAny>) -> PyResult<usize> {
    match values.downcast::<PyDict>() {
        Ok(map) if !map.is_empty() => Ok(ATTRIBUTE_BYTES * map.len() + text_bytes(map)?),
        _ => Ok(0),
    }
}

fn footprint(span: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    let py = span.py();
    let Ok(attributes) = span.getattr(intern!(py, "attributes"))?.downcast_into::<PyDict>() else {
        return Ok(None);
    };
    let mut size = SPAN_BYTES + span.getattr(intern!(py, "name"))?.len()? + ATTRIBUTE_BYTES * attributes.len();
    size += text_bytes(&attributes)?;
    for event in span.getattr(intern!(py, "events"))?.try_iter()? {
        let event = event?;
        size += EVENT_BYTES + event.getattr(intern!(py, "name"))?.len()?;
        size += map_bytes(&event.getattr(intern!(py, "attributes"))?)?;
    }
    for link in span.getattr(intern!(py, "links"))?.try_iter()? {
        size += EVENT_BYTES + map_bytes(&link?.getattr(intern!(py, "attributes"))?)?;
    }
    let message = span.getattr(intern!(py, "status_message"))?;
    if message.is_truthy()? {
        size += message.len()?;
    }
    Ok(Some(size))
}

/// Each span's `footprint`, or None when the reference must count them (module docstring).
#[pyfunction]
pub fn footprints<'py>(py: Python<'py>, spans: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyList>>> {
    let mut sizes = Vec::new();
    for span in spans.try_iter()? {
        match footprint(&span?)? {
            Some(size) => sizes.push(size),
            None => return Ok(None),
        }
    }
    Ok(Some(PyList::new(py, sizes)?))
}
