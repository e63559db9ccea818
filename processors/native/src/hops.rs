//! The hops of one trace, as `hopscope.processors.derive.hops` derives them (its `_derive_hops`
//! is the specification; the differential test holds the two to the same records): RPC hops
//! (a CLIENT span and the SERVER span answering it), messaging hops (a PRODUCER span and its
//! earliest consumer, child or linking), one-sided hops to a virtual target.
//!
//! The pairing (`TraceIndex.server_of`, `raw_children`, `by_id`) comes from the Python index
//! every derivation shares. Values are passed through as the reference passes them (ids,
//! services, nodes, start times); what this core cannot compute the reference's way (a time
//! past 64 bits, an attribute map that is no `dict`, a resend count that is neither an `int`
//! nor absent, text that is not valid UTF-8) returns None, and the reference derives the hops.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString, PyType};

use crate::{or_reference, Built, RecordClass, Stop};

// hopscope.ingest.conventions, as the hops read them (`KEYS` lets a test compare).
const DB_SYSTEM: &str = "db.system";
const SERVER_ADDRESS: &str = "server.address";
const PEER_SERVICE: &str = "peer.service";
const PEER_NODE: &str = "hopscope.peer.node";
const HTTP_RESEND_COUNT: &str = "http.request.resend_count";
const RPC_METHOD: &str = "rpc.method";
const RPC_SERVICE: &str = "rpc.service";
const ERROR_TYPE: &str = "error.type";
const MESSAGING_DESTINATION: &str = "messaging.destination.name";
const MESSAGING_SYSTEM: &str = "messaging.system";
pub const KEYS: [&str; 10] = [
    DB_SYSTEM, SERVER_ADDRESS, PEER_SERVICE, PEER_NODE, HTTP_RESEND_COUNT, RPC_METHOD,
    RPC_SERVICE, ERROR_TYPE, MESSAGING_DESTINATION, MESSAGING_SYSTEM,
];

// Hop kinds and hops.ABANDON_TOLERANCE_NS / _SHARE.
const RPC: &str = "rpc";
const MESSAGING: &str = "messaging";
const DB: &str = "db";
const VIRTUAL: &str = "virtual";
const ABANDON_TOLERANCE_NS: i128 = 2_000_000;
const ABANDON_TOLERANCE_SHARE: f64 = 0.01;

fn time(value: &Bound<'_, PyAny>) -> Built<i128> {
    value.extract::<i64>().map(i128::from).map_err(|_| Stop::Reference)
}

/// A span as the hops read it.
struct Span<'py> {
    record: Bound<'py, PyAny>,
    attributes: Bound<'py, PyDict>,
    start: i128,
    end: i128,
}

impl<'py> Span<'py> {
    fn new(record: &Bound<'py, PyAny>) -> Built<Self> {
        let py = record.py();
        let attributes =
            record.getattr(intern!(py, "attributes"))?.downcast_into::<PyDict>().map_err(|_| Stop::Reference)?;
        let start = time(&record.getattr(intern!(py, "start_ns"))?)?;
        let end = time(&record.getattr(intern!(py, "end_ns"))?)?;
        Ok(Span { record: record.clone(), attributes, start, end })
    }

    fn get(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
        self.record.getattr(name)
    }

    /// `end_of`: never before the start.
    fn end_of(&self) -> i128 {
        self.end.max(self.start)
    }

    /// `duration`: never negative.
    fn duration(&self) -> i128 {
        (self.end - self.start).max(0)
    }

    /// `attr_str`: the attribute as a non-empty string, or None.
    fn attr_str(&self, key: &Bound<'py, PyString>) -> Built<Option<Bound<'py, PyAny>>> {
        Ok(crate::index::attr_str(&self.attributes, key)?)
    }

    /// `attr_int`: an int (no bool) as it is, None for what is neither an int nor text; text
    /// (digits, as some exporters send) is left to the reference.
    fn attr_int(&self, key: &Bound<'py, PyString>) -> Built<Bound<'py, PyAny>> {
        let py = self.record.py();
        match self.attributes.get_item(key)? {
            Some(value) if value.is_instance_of::<PyBool>() => Ok(py.None().into_bound(py)),
            Some(value) if value.is_instance_of::<PyInt>() => Ok(value),
            Some(value) if value.is_instance_of::<PyString>() => Err(Stop::Reference),
            _ => Ok(py.None().into_bound(py)),
        }
    }

    /// `failed`: error status, or `error.type` set.
    fn failed(&self) -> Built<bool> {
        let py = self.record.py();
        Ok(is_text(&self.get(intern!(py, "status"))?, "error")?
            || self.attr_str(intern!(py, ERROR_TYPE))?.is_some())
    }
}

fn text(value: &Bound<'_, PyAny>) -> Built<String> {
    let string = value.downcast::<PyString>().map_err(|_| Stop::Reference)?;
    Ok(string.to_str().map_err(|_| Stop::Reference)?.to_owned())
}

/// `call_operation`: `rpc.service/rpc.method` (the client's, else the server's), else the
/// client's span name.
fn call_operation<'py>(client: &Span<'py>, server: Option<&Span<'py>>) -> Built<Bound<'py, PyAny>> {
    let py = client.record.py();
    for span in std::iter::once(client).chain(server) {
        if let Some(method) = span.attr_str(intern!(py, RPC_METHOD))? {
            return Ok(match span.attr_str(intern!(py, RPC_SERVICE))? {
                Some(service) => {
                    PyString::new(py, &format!("{}/{}", text(&service)?, text(&method)?)).into_any()
                }
                None => method,
            });
        }
    }
    Ok(client.get(intern!(py, "name"))?)
}

fn int(py: Python<'_>, value: i128) -> PyResult<PyObject> {
    Ok(match i64::try_from(value) {
        Ok(small) => small.into_pyobject(py)?.into_any().unbind(),
        Err(_) => value.into_pyobject(py)?.into_any().unbind(),
    })
}

fn optional_int(py: Python<'_>, value: Option<i128>) -> PyResult<PyObject> {
    value.map_or_else(|| Ok(py.None()), |v| int(py, v))
}

fn boolean(py: Python<'_>, value: bool) -> PyObject {
    PyBool::new(py, value).to_owned().into_any().unbind()
}

/// `client_gave_up`: the server outlasts its client by more than coarse timestamps explain.
fn client_gave_up(client_ns: i128, server_ns: i128) -> bool {
    let excess = server_ns - client_ns;
    // Python compares the int with the float share exactly: above the float is above its floor.
    let share = ABANDON_TOLERANCE_SHARE * client_ns as f64;
    excess > ABANDON_TOLERANCE_NS && excess > share.floor() as i128
}

/// The fields of a `Hop` in declaration order.
type Fields = [PyObject; 22];

fn rpc_hop<'py>(client: &Span<'py>, server: &Span<'py>) -> Built<Fields> {
    let py = client.record.py();
    let (client_ns, server_ns) = (client.duration(), server.duration());
    let request_leg = server.start - client.start;
    let response_leg = client.end_of() - server.end_of();
    let abandoned = client_gave_up(client_ns, server_ns);
    // A caller that gave up leaves the wire time unknown; its negative legs are no skew.
    let network = if abandoned { None } else { Some(client_ns - server_ns) };
    let skew = !abandoned && (request_leg < 0 || response_leg < 0);
    let adjusted = match network {
        None => (None, None),
        // Symmetric split under skew; the halves add up exactly (floor division, as Python's).
        Some(network) if skew => (Some(network.div_euclid(2)), Some(network - network.div_euclid(2))),
        Some(_) => (Some(request_leg), Some(response_leg)),
    };
    let server_node = server.get(intern!(py, "node"))?;
    let target_node = if server_node.is_truthy()? {
        server_node.unbind()
    } else {
        client.attr_str(intern!(py, SERVER_ADDRESS))?.map_or_else(|| py.None(), Bound::unbind)
    };
    Ok([
        client.get(intern!(py, "trace_id"))?.unbind(),
        client.get(intern!(py, "span_id"))?.unbind(),
        if client.attr_str(intern!(py, DB_SYSTEM))?.is_some() { intern!(py, DB) } else { intern!(py, RPC) }
            .clone()
            .into_any()
            .unbind(),
        client.get(intern!(py, "service"))?.unbind(),
        client.get(intern!(py, "node"))?.unbind(),
        server.get(intern!(py, "service"))?.unbind(),
        target_node,
        call_operation(client, Some(server))?.unbind(),
        client.get(intern!(py, "start_ns"))?.unbind(),
        int(py, client_ns)?,
        int(py, server_ns)?,
        optional_int(py, network)?,
        int(py, request_leg)?,
        int(py, response_leg)?,
        boolean(py, skew),
        optional_int(py, adjusted.0)?,
        optional_int(py, adjusted.1)?,
        py.None(),
        boolean(py, client.failed()? || server.failed()?),
        client.attr_int(intern!(py, HTTP_RESEND_COUNT))?.unbind(),
        server.get(intern!(py, "span_id"))?.unbind(),
        boolean(py, abandoned),
    ])
}

fn one_sided<'py>(client: &Span<'py>, target: Bound<'py, PyAny>, kind: &Bound<'py, PyString>) -> Built<Fields> {
    let py = client.record.py();
    // The endpoint map's node for the address (a database's primary, a cache), else the
    // address the client called.
    let target_node = match client.attr_str(intern!(py, PEER_NODE))? {
        Some(node) => Some(node),
        None => client.attr_str(intern!(py, SERVER_ADDRESS))?,
    };
    Ok([
        client.get(intern!(py, "trace_id"))?.unbind(),
        client.get(intern!(py, "span_id"))?.unbind(),
        kind.clone().into_any().unbind(),
        client.get(intern!(py, "service"))?.unbind(),
        client.get(intern!(py, "node"))?.unbind(),
        target.unbind(),
        target_node.map_or_else(|| py.None(), Bound::unbind),
        call_operation(client, None)?.unbind(),
        client.get(intern!(py, "start_ns"))?.unbind(),
        int(py, client.duration())?,
        py.None(),
        py.None(),
        py.None(),
        py.None(),
        boolean(py, false),
        py.None(),
        py.None(),
        py.None(),
        boolean(py, client.failed()?),
        client.attr_int(intern!(py, HTTP_RESEND_COUNT))?.unbind(),
        py.None(),
        boolean(py, false),
    ])
}

fn first_of<'py>(span: &Span<'py>, keys: &[&Bound<'py, PyString>]) -> Built<Option<Bound<'py, PyAny>>> {
    for key in keys {
        if let Some(value) = span.attr_str(key)? {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

fn virtual_hop<'py>(client: &Span<'py>) -> Built<Option<Fields>> {
    let py = client.record.py();
    let keys = [intern!(py, PEER_SERVICE), intern!(py, DB_SYSTEM), intern!(py, SERVER_ADDRESS)];
    let Some(target) = first_of(client, &keys)? else {
        return Ok(None);
    };
    let kind = if client.attr_str(intern!(py, DB_SYSTEM))?.is_some() {
        intern!(py, DB)
    } else {
        intern!(py, VIRTUAL)
    };
    Ok(Some(one_sided(client, target, kind)?))
}

fn messaging_hop<'py>(producer: &Span<'py>, consumer: Option<&Span<'py>>) -> Built<Option<Fields>> {
    let py = producer.record.py();
    let Some(consumer) = consumer else {
        let keys = [
            intern!(py, PEER_SERVICE),
            intern!(py, MESSAGING_DESTINATION),
            intern!(py, MESSAGING_SYSTEM),
            intern!(py, SERVER_ADDRESS),
        ];
        return match first_of(producer, &keys)? {
            Some(target) => Ok(Some(one_sided(producer, target, intern!(py, MESSAGING))?)),
            None => Ok(None),
        };
    };
    let queue = consumer.start - producer.end_of();
    let consumer_node = consumer.get(intern!(py, "node"))?;
    let target_node = if consumer_node.is_truthy()? {
        consumer_node.unbind()
    } else {
        producer.attr_str(intern!(py, SERVER_ADDRESS))?.map_or_else(|| py.None(), Bound::unbind)
    };
    Ok(Some([
        producer.get(intern!(py, "trace_id"))?.unbind(),
        producer.get(intern!(py, "span_id"))?.unbind(),
        intern!(py, MESSAGING).clone().into_any().unbind(),
        producer.get(intern!(py, "service"))?.unbind(),
        producer.get(intern!(py, "node"))?.unbind(),
        consumer.get(intern!(py, "service"))?.unbind(),
        target_node,
        call_operation(producer, Some(consumer))?.unbind(),
        producer.get(intern!(py, "start_ns"))?.unbind(),
        int(py, producer.duration())?,
        int(py, consumer.duration())?,
        py.None(),
        py.None(),
        py.None(),
        boolean(py, queue < 0),
        py.None(),
        py.None(),
        int(py, queue)?,
        boolean(py, producer.failed()? || consumer.failed()?),
        producer.attr_int(intern!(py, HTTP_RESEND_COUNT))?.unbind(),
        consumer.get(intern!(py, "span_id"))?.unbind(),
        boolean(py, false),
    ]))
}

/// `value == text`, without a Python string made for the comparison when `value` is a `str`.
fn is_text(value: &Bound<'_, PyAny>, text: &str) -> PyResult<bool> {
    match value.downcast_exact::<PyString>() {
        Ok(string) => Ok(string.to_str().is_ok_and(|s| s == text)),
        Err(_) => value.eq(text),
    }
}

fn kind_is(span: &Bound<'_, PyAny>, kind: &str) -> PyResult<bool> {
    is_text(&span.getattr(intern!(span.py(), "kind"))?, kind)
}

/// `hops._earliest`: the span that starts first, ties to the smallest id, the first such in
/// the order given.
fn earliest<'py>(spans: Vec<Bound<'py, PyAny>>) -> Built<Option<Span<'py>>> {
    let mut best: Option<(i128, String, Bound<'py, PyAny>)> = None;
    for span in spans {
        let py = span.py();
        let start = time(&span.getattr(intern!(py, "start_ns"))?)?;
        let id = text(&span.getattr(intern!(py, "span_id"))?)?;
        if best.as_ref().is_none_or(|(s, i, _)| (start, &id) < (*s, i)) {
            best = Some((start, id, span));
        }
    }
    best.map(|(_, _, span)| Span::new(&span)).transpose()
}

/// `hops._consumer_links`: producer span id → CONSUMER spans linking to it from the same trace.
fn consumer_links<'py>(spans: &Bound<'py, PyList>, by_id: &Bound<'py, PyDict>) -> Built<Bound<'py, PyDict>> {
    let py = spans.py();
    let links = PyDict::new(py);
    for span in spans.iter() {
        if !kind_is(&span, "consumer")? {
            continue;
        }
        for link in span.getattr(intern!(py, "links"))?.try_iter()? {
            let link = link?;
            let Some(producer) = by_id.get_item(link.getattr(intern!(py, "span_id"))?)? else {
                continue;
            };
            if kind_is(&producer, "producer")?
                && link.getattr(intern!(py, "trace_id"))?.eq(producer.getattr(intern!(py, "trace_id"))?)?
                && !producer.is(&span)
            {
                let key = producer.getattr(intern!(py, "span_id"))?;
                match links.get_item(&key)? {
                    Some(listed) => listed.downcast_into::<PyList>().map_err(|_| Stop::Reference)?.append(&span)?,
                    None => links.set_item(key, PyList::new(py, [&span])?)?,
                }
            }
        }
    }
    Ok(links)
}

/// The hops of the trace whose index holds `spans` (`hops._derive_hops`), ordered by start
/// time, then hop id; None when the reference must derive them (module docstring).
#[pyfunction]
pub fn hops<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyList>,
    server_of: &Bound<'py, PyDict>,
    raw_children: &Bound<'py, PyDict>,
    by_id: &Bound<'py, PyDict>,
    hop: &Bound<'py, PyType>,
) -> PyResult<Option<Bound<'py, PyList>>> {
    or_reference(derive(py, spans, server_of, raw_children, by_id, hop))
}

fn derive<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyList>,
    server_of: &Bound<'py, PyDict>,
    raw_children: &Bound<'py, PyDict>,
    by_id: &Bound<'py, PyDict>,
    hop: &Bound<'py, PyType>,
) -> Built<Bound<'py, PyList>> {
    let mut found: Vec<(i128, String, Fields)> = Vec::new();
    let mut links: Option<Bound<'py, PyDict>> = None;
    for record in spans.iter() {
        let kind = record.getattr(intern!(py, "kind"))?;
        let fields = if is_text(&kind, "client")? {
            let client = Span::new(&record)?;
            match server_of.get_item(record.getattr(intern!(py, "span_id"))?)? {
                Some(server) => Some(rpc_hop(&client, &Span::new(&server)?)?),
                None => virtual_hop(&client)?,
            }
        } else if is_text(&kind, "producer")? {
            let producer = Span::new(&record)?;
            let id = record.getattr(intern!(py, "span_id"))?;
            let trace_id = record.getattr(intern!(py, "trace_id"))?;
            let mut consumers = Vec::new();
            if let Some(children) = raw_children.get_item(&id)? {
                for child in children.try_iter()? {
                    let child = child?;
                    if kind_is(&child, "consumer")? && child.getattr(intern!(py, "trace_id"))?.eq(&trace_id)? {
                        consumers.push(child);
                    }
                }
            }
            let mut consumer = earliest(consumers)?;
            if consumer.is_none() {
                if links.is_none() {
                    links = Some(consumer_links(spans, by_id)?);
                }
                let linking = match links.as_ref().expect("just set").get_item(&id)? {
                    Some(listed) => listed.try_iter()?.collect::<PyResult<Vec<_>>>()?,
                    None => Vec::new(),
                };
                consumer = earliest(linking)?;
            }
            messaging_hop(&producer, consumer.as_ref())?
        } else {
            continue;
        };
        if let Some(fields) = fields {
            let id = text(&record.getattr(intern!(py, "span_id"))?)?;
            let start = time(&record.getattr(intern!(py, "start_ns"))?)?;
            found.push((start, id, fields));
        }
    }
    found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let class = RecordClass::new(py, hop.as_any(), 22)?;
    let list = PyList::empty(py);
    for (_, _, fields) in found {
        list.append(class.build(py, fields)?)?;
    }
    Ok(list)
}
