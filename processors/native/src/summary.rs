//! What the trace summary reads from the spans, as `hopscope.processors.derive.summary._facts`
//! reads it (the specification; the differential test holds the two to the same values): the
//! extent from the first start to the last end, the services, whether any span or the root
//! failed (error status or `error.type`), and the payment id of the root, else of the first
//! span that has one (by start, then span id).
//!
//! What this core cannot read the reference's way (a time past 64 bits, a service or id that
//! is not a `str` of valid UTF-8, attributes that are no `dict`) returns None, and the
//! reference reads the trace.

use std::collections::BTreeMap;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString, PyTuple};

use crate::index::{attr_str, attributes_of, text, time};
use crate::{or_reference, Built};

const ERROR_TYPE: &str = "error.type";
const PAYMENT_ID: &str = "payment.id";
pub const KEYS: [&str; 2] = [ERROR_TYPE, PAYMENT_ID];

/// `value == text`, without a Python string made for the comparison when `value` is a `str`.
fn is_text(value: &Bound<'_, PyAny>, text: &str) -> PyResult<bool> {
    match value.downcast_exact::<PyString>() {
        Ok(string) => Ok(string.to_str().is_ok_and(|s| s == text)),
        Err(_) => value.eq(text),
    }
}

/// `_common.failed`: error status, or `error.type` set.
fn failed<'py>(span: &Bound<'py, PyAny>, attributes: &Bound<'py, PyDict>) -> PyResult<bool> {
    let py = span.py();
    Ok(is_text(&span.getattr(intern!(py, "status"))?, "error")?
        || attr_str(attributes, intern!(py, ERROR_TYPE))?.is_some())
}

fn int(py: Python<'_>, value: i128) -> PyResult<PyObject> {
    Ok(match i64::try_from(value) {
        Ok(small) => small.into_pyobject(py)?.into_any().unbind(),
        Err(_) => value.into_pyobject(py)?.into_any().unbind(),
    })
}

/// `summary._facts` of the index's `spans` and main `root`: `(extent_ns, services, error,
/// root_error, payment_id)`; None when the reference must read them (module docstring).
#[pyfunction]
#[pyo3(signature = (spans, root))]
pub fn summary_facts<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyList>,
    root: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    or_reference(facts(py, spans, root))
}

fn facts<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyList>,
    root: Option<&Bound<'py, PyAny>>,
) -> Built<Bound<'py, PyTuple>> {
    let payment_key = intern!(py, PAYMENT_ID);
    let mut first: Option<i128> = None;
    let mut last: Option<i128> = None;
    let mut services: BTreeMap<String, Bound<'py, PyAny>> = BTreeMap::new();
    let mut error = false;
    // The first span with a payment id, by start then span id.
    let mut paying: Option<(i128, String, Bound<'py, PyAny>)> = None;
    for span in spans.iter() {
        let start = time(&span.getattr(intern!(py, "start_ns"))?)?;
        let end = time(&span.getattr(intern!(py, "end_ns"))?)?.max(start);
        first = Some(first.map_or(start, |f| f.min(start)));
        last = Some(last.map_or(end, |l| l.max(end)));
        let service = span.getattr(intern!(py, "service"))?;
        if service.is_truthy()? {
            let name = text(&service)?;
            services.entry(name).or_insert(service);
        }
        let attributes = attributes_of(&span)?;
        if !error && failed(&span, &attributes)? {
            error = true;
        }
        if let Some(found) = attr_str(&attributes, payment_key)? {
            if found.is_truthy()? {
                let id = text(&span.getattr(intern!(py, "span_id"))?)?;
                if paying.as_ref().is_none_or(|(s, i, _)| (start, &id) < (*s, i)) {
                    paying = Some((start, id, found));
                }
            }
        }
    }
    let extent = match (first, last) {
        (Some(first), Some(last)) => last - first,
        _ => 0,
    };
    let (root_error, root_payment) = match root {
        Some(root) => {
            let attributes = attributes_of(root)?;
            let found = attr_str(&attributes, payment_key)?;
            let found = match found {
                Some(found) if found.is_truthy()? => Some(found),
                _ => None,
            };
            (failed(root, &attributes)?, found)
        }
        None => (false, None),
    };
    let payment_id: PyObject = match root_payment.or(paying.map(|(_, _, found)| found)) {
        Some(found) => found.unbind(),
        None => py.None(),
    };
    Ok(PyTuple::new(py, [
        int(py, extent)?,
        PyTuple::new(py, services.into_values())?.into_any().unbind(),
        PyBool::new(py, error).to_owned().into_any().unbind(),
        PyBool::new(py, root_error).to_owned().into_any().unbind(),
        payment_id,
    ])?)
}
