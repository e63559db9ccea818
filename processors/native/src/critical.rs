//! The critical path of one trace, steps 2-5 of `hopscope.processors.derive.critical_path`
//! (its `_walked` is the specification; the differential test holds the two to the same
//! records): asynchronous subtrees pruned, children sanitized against their parents (clock
//! skew shifted, overflow clipped or dropped), the last-finishing-child walk, and the segments
//! and exclusive times it gives.
//!
//! Step 1 (the tree: duplicates, missing parents, parent cycles, the main root) stays with
//! the Python `TraceIndex`, which every derivation shares; this core takes its `children`.
//! Times are read as 64-bit integers and computed in 128-bit ones; a span this core cannot
//! read the reference's way (a time past 64 bits, a service, name or id that is not a `str`
//! of valid UTF-8) returns None, and the reference walks the trace.

use std::collections::BTreeMap;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};

use crate::{or_reference, Built, RecordClass, Stop};

// hopscope.processors.derive.critical_path's constants (CRISP's, as integer ratios).
const SERVER_LENGTHENING_PERCENT: i128 = 101;
const OVERLAP_ALLOWANCE_PERCENT: i128 = 1;

// Segment kinds, in `SEGMENT_KINDS` order (the order of `by_kind`).
const SELF: &str = "self";
const NETWORK: &str = "network";
const COORDINATION: &str = "coordination";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Server,
    Client,
    Producer,
    Consumer,
    Other,
}

/// A span of the sanitized tree: its record, id, kind and effective interval.
struct Node<'py> {
    span: Bound<'py, PyAny>,
    id: Bound<'py, PyString>,
    id_text: String,
    kind: Kind,
    start: i128,
    end: i128,
    shift: i128,
}

fn text(value: &Bound<'_, PyAny>) -> Built<String> {
    match value.downcast_exact::<PyString>() {
        Ok(string) => Ok(string.to_str().map_err(|_| Stop::Reference)?.to_owned()),
        Err(_) => Err(Stop::Reference),
    }
}

fn time(value: &Bound<'_, PyAny>) -> Built<i128> {
    value.extract::<i64>().map(i128::from).map_err(|_| Stop::Reference)
}

/// A span as the walk reads it: id, kind, start and end (`end_of`: never before the start).
fn node<'py>(span: &Bound<'py, PyAny>) -> Built<Node<'py>> {
    let py = span.py();
    let id_value = span.getattr(intern!(py, "span_id"))?;
    let id_text = text(&id_value)?;
    let id = id_value.downcast_into_exact::<PyString>().map_err(|_| Stop::Reference)?;
    let kind_value = span.getattr(intern!(py, "kind"))?;
    let kind = match kind_value.downcast_exact::<PyString>().ok().map(|k| k.to_str()) {
        Some(Ok("server")) => Kind::Server,
        Some(Ok("client")) => Kind::Client,
        Some(Ok("producer")) => Kind::Producer,
        Some(Ok("consumer")) => Kind::Consumer,
        _ => Kind::Other,
    };
    let start = time(&span.getattr(intern!(py, "start_ns"))?)?;
    let end = time(&span.getattr(intern!(py, "end_ns"))?)?.max(start);
    Ok(Node { span: span.clone(), id, id_text, kind, start, end, shift: 0 })
}

/// The sanitized tree under the root (`_Tree`): nodes in breadth-first order, the root first.
struct Tree<'py> {
    nodes: Vec<Node<'py>>,
    kids: Vec<Vec<usize>>,
    async_ids: Vec<String>,
    dropped: Vec<String>,
    clipped: Vec<String>,
    skewed: Vec<String>,
    events: Vec<Option<(Vec<i128>, Vec<i128>)>>,
}

impl<'py> Tree<'py> {
    fn new(root: &Bound<'py, PyAny>, children: &Bound<'py, PyDict>) -> Built<Self> {
        let mut tree = Tree {
            nodes: vec![node(root)?],
            kids: vec![Vec::new()],
            async_ids: Vec::new(),
            dropped: Vec::new(),
            clipped: Vec::new(),
            skewed: Vec::new(),
            events: Vec::new(),
        };
        let mut at = 0;
        while at < tree.nodes.len() {
            // grows while iterating: breadth-first, no recursion
            let Some(listed) = children.get_item(&tree.nodes[at].id)? else {
                at += 1;
                continue;
            };
            let listed = listed.downcast_into::<PyList>().map_err(|_| Stop::Reference)?;
            let (p_kind, p_start, p_end, p_shift) = {
                let parent = &tree.nodes[at];
                (parent.kind, parent.start, parent.end, parent.shift)
            };
            for child in listed.iter() {
                let mut child = node(&child)?;
                // Step 2: asynchronous children do not block (the producer does not wait).
                if p_kind == Kind::Producer && child.kind == Kind::Consumer {
                    tree.async_ids.push(child.id_text);
                    continue;
                }
                // Step 3: sanitize against the parent's sanitized interval.
                let (mut c_start, mut c_end, mut c_shift) =
                    (child.start + p_shift, child.end + p_shift, p_shift);
                if p_start <= c_start && c_end <= p_end {
                } else if p_kind == Kind::Client
                    && child.kind == Kind::Server
                    && (c_end - c_start) * 100 <= (p_end - p_start) * SERVER_LENGTHENING_PERCENT
                {
                    // Clock skew: cap the server at the client's length, move it inside.
                    let length = (c_end - c_start).min(p_end - p_start);
                    let moved = c_start.max(p_start).min(p_end - length);
                    c_shift += moved - c_start;
                    c_start = moved;
                    c_end = moved + length;
                    tree.skewed.push(child.id_text.clone());
                } else if c_start >= p_end || c_end <= p_start {
                    tree.dropped.push(child.id_text);
                    continue;
                } else {
                    c_start = c_start.max(p_start);
                    c_end = c_end.min(p_end);
                    tree.clipped.push(child.id_text.clone());
                }
                child.start = c_start;
                child.end = c_end;
                child.shift = c_shift;
                tree.kids[at].push(tree.nodes.len());
                tree.nodes.push(child);
                tree.kids.push(Vec::new());
            }
            at += 1;
        }
        tree.events = (0..tree.nodes.len()).map(|_| None).collect();
        Ok(tree)
    }

    /// Children, the last-finishing first; ties: the earliest start, then the smallest id.
    fn by_end_desc(&self, at: usize) -> Vec<usize> {
        let mut kids = self.kids[at].clone();
        if kids.len() > 1 {
            let nodes = &self.nodes;
            kids.sort_by(|&a, &b| {
                let (a, b) = (&nodes[a], &nodes[b]);
                b.end.cmp(&a.end).then(a.start.cmp(&b.start)).then(a.id_text.cmp(&b.id_text))
            });
        }
        kids
    }

    /// How many child starts and ends fall in `[low, high]` (CRISP's event count).
    fn events_between(&mut self, at: usize, low: i128, high: i128) -> usize {
        if self.events[at].is_none() {
            let mut starts: Vec<i128> = self.kids[at].iter().map(|&k| self.nodes[k].start).collect();
            let mut ends: Vec<i128> = self.kids[at].iter().map(|&k| self.nodes[k].end).collect();
            starts.sort_unstable();
            ends.sort_unstable();
            self.events[at] = Some((starts, ends));
        }
        let (starts, ends) = self.events[at].as_ref().expect("just filled");
        let within = |sorted: &Vec<i128>| {
            sorted.partition_point(|&x| x <= high) - sorted.partition_point(|&x| x < low)
        };
        within(starts) + within(ends)
    }
}

/// One span being walked (`_Frame`).
struct Frame {
    at: usize,
    bound: i128,
    last_end: Option<i128>,
    order: Vec<usize>,
    cursor: usize,
}

/// A stretch `[start, end)` of the path spent in the node at the first index.
type Segment = (usize, i128, i128);

/// The last-finishing-child walk (`_walk`): segments, latest first, the spans walked in the
/// order they were reached, and every node's exclusive time.
fn walk(tree: &mut Tree<'_>) -> (Vec<Segment>, Vec<usize>, Vec<i128>) {
    let mut segments = Vec::new();
    let mut walked = vec![0usize];
    let mut exclusive = vec![0i128; tree.nodes.len()];
    let mut stack = vec![Frame { at: 0, bound: tree.nodes[0].end, last_end: None, order: tree.by_end_desc(0), cursor: 0 }];
    while let Some(frame) = stack.last_mut() {
        let (sid, t, last_end) = (frame.at, frame.bound, frame.last_end);
        let (s_start, s_end) = (tree.nodes[sid].start, tree.nodes[sid].end);
        // The bound only moves back in time and path children come by decreasing end, so a
        // child that is not eligible now never will be: one pass over the sorted children.
        let mut chosen = None;
        while frame.cursor < frame.order.len() {
            let kid = frame.order[frame.cursor];
            frame.cursor += 1;
            let (k_start, k_end) = (tree.nodes[kid].start, tree.nodes[kid].end);
            let eligible = match last_end {
                None => k_start < t || k_end <= t, // first pick: inside the window
                Some(_) if k_end <= t => true,
                Some(last_end) => {
                    k_start < t
                        && k_end < last_end
                        && (k_end - t) * 100 < (s_end - s_start) * OVERLAP_ALLOWANCE_PERCENT
                        // only the two events bounding the overlap: no third child inside it
                        && tree.events_between(sid, t, k_end) == 2
                }
            };
            if eligible {
                chosen = Some(kid);
                break;
            }
        }
        let Some(chosen) = chosen else {
            if t > s_start {
                segments.push((sid, s_start, t));
                exclusive[sid] += t - s_start;
            }
            stack.pop();
            continue;
        };
        let (c_start, c_end) = (tree.nodes[chosen].start, tree.nodes[chosen].end);
        let kid_end = c_end.min(t); // an overlapping child is walked up to t only
        if t > kid_end {
            segments.push((sid, kid_end, t));
            exclusive[sid] += t - kid_end;
        }
        frame.bound = c_start;
        frame.last_end = Some(c_end);
        walked.push(chosen);
        let order = tree.by_end_desc(chosen);
        stack.push(Frame { at: chosen, bound: kid_end, last_end: None, order, cursor: 0 });
    }
    (segments, walked, exclusive)
}

/// An int as Python has it (the 64-bit conversion when it fits: the common, fast one).
fn int(py: Python<'_>, value: i128) -> PyResult<PyObject> {
    Ok(match i64::try_from(value) {
        Ok(small) => small.into_pyobject(py)?.into_any().unbind(),
        Err(_) => value.into_pyobject(py)?.into_any().unbind(),
    })
}

fn sorted_ids<'py>(py: Python<'py>, mut ids: Vec<String>) -> PyResult<Bound<'py, PyTuple>> {
    ids.sort_unstable();
    PyTuple::new(py, ids)
}

/// A segment kind as an interned Python string.
fn segment_kind<'py>(py: Python<'py>, kind: &str) -> &'py Bound<'py, PyString> {
    match kind {
        SELF => intern!(py, SELF),
        NETWORK => intern!(py, NETWORK),
        _ => intern!(py, COORDINATION),
    }
}

/// What a span on the path is: its service, operation key and segment kind, as Python objects.
struct Info {
    service: String,
    service_obj: PyObject,
    operation: String,
    operation_obj: PyObject,
    kind: &'static str,
}

/// Steps 2-5 of the critical path under `root` (`critical_path._walked`), as the tuple of
/// `_Walked`'s fields; None when the reference must walk this trace (module docstring).
#[pyfunction]
pub fn critical_path<'py>(
    py: Python<'py>,
    root: &Bound<'py, PyAny>,
    children: &Bound<'py, PyDict>,
    coordinating: &Bound<'py, PyDict>,
    server_of: &Bound<'py, PyDict>,
    segment: &Bound<'py, PyType>,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    or_reference(walked(py, root, children, coordinating, server_of, segment))
}

fn walked<'py>(
    py: Python<'py>,
    root: &Bound<'py, PyAny>,
    children: &Bound<'py, PyDict>,
    coordinating: &Bound<'py, PyDict>,
    server_of: &Bound<'py, PyDict>,
    segment: &Bound<'py, PyType>,
) -> Built<Bound<'py, PyTuple>> {
    // Steps 2-3: async subtrees pruned, children sanitized.
    let mut tree = Tree::new(root, children)?;
    // Step 4: the walk.
    let (raw_segments, walked, exclusive) = walk(&mut tree);

    // Step 5: what each span on the path is, once.
    let mut info: Vec<Option<Info>> = (0..tree.nodes.len()).map(|_| None).collect();
    for &at in &walked {
        let node = &tree.nodes[at];
        let service_obj = node.span.getattr(intern!(py, "service"))?;
        let service = text(&service_obj)?;
        let name = text(&node.span.getattr(intern!(py, "name"))?)?;
        let operation = format!("[{service}] {name}");
        let kind = if coordinating.contains(&node.id)? {
            COORDINATION
        } else if node.kind == Kind::Client && server_of.contains(&node.id)? {
            NETWORK // the SERVER child may be clipped or off the path: still a paired call
        } else {
            SELF
        };
        let operation_obj = PyString::new(py, &operation).into_any().unbind();
        info[at] = Some(Info { service, service_obj: service_obj.unbind(), operation, operation_obj, kind });
    }
    let info_of = |at: usize| info[at].as_ref().expect("every walked span has its info");

    // Segments in time order (the walk emits them latest first), adjacent pieces of the same
    // span merged (a zero-length child in between leaves two touching pieces).
    let mut merged: Vec<Segment> = Vec::with_capacity(raw_segments.len());
    for &(at, start, end) in raw_segments.iter().rev() {
        match merged.last_mut() {
            Some(last) if last.0 == at && last.2 == start => last.2 = end,
            _ => merged.push((at, start, end)),
        }
    }
    let class = RecordClass::new(py, segment.as_any(), 6)?;
    let mut segments = Vec::with_capacity(merged.len());
    for (at, start, end) in merged {
        let about = info_of(at);
        segments.push(class.build(py, [
            tree.nodes[at].id.clone().into_any().unbind(),
            about.service_obj.clone_ref(py),
            about.operation_obj.clone_ref(py),
            segment_kind(py, about.kind).clone().into_any().unbind(),
            int(py, start)?,
            int(py, end)?,
        ])?);
    }

    // Aggregates over every span on the path (zero-time ones included: they are on the path).
    let exclusive_ns = PyDict::new(py);
    let mut by_operation: BTreeMap<&str, (i128, &PyObject)> = BTreeMap::new();
    let mut by_service: BTreeMap<&str, (i128, &PyObject)> = BTreeMap::new();
    let mut by_kind: [i128; 3] = [0; 3];
    let mut by_operation_kind: BTreeMap<(&str, &str), (i128, &PyObject)> = BTreeMap::new();
    for &at in &walked {
        let excl = exclusive[at];
        let about = info_of(at);
        exclusive_ns.set_item(&tree.nodes[at].id, int(py, excl)?)?;
        by_operation.entry(&about.operation).or_insert((0, &about.operation_obj)).0 += excl;
        by_operation_kind
            .entry((&about.operation, about.kind))
            .or_insert((0, &about.operation_obj))
            .0 += excl;
        by_service.entry(&about.service).or_insert((0, &about.service_obj)).0 += excl;
        by_kind[match about.kind {
            SELF => 0,
            NETWORK => 1,
            _ => 2,
        }] += excl;
    }
    let by_operation_dict = PyDict::new(py);
    for (_, (total, key)) in by_operation {
        by_operation_dict.set_item(key, int(py, total)?)?;
    }
    let by_service_dict = PyDict::new(py);
    for (_, (total, key)) in by_service {
        by_service_dict.set_item(key, int(py, total)?)?;
    }
    let by_kind_dict = PyDict::new(py);
    for (name, total) in [SELF, NETWORK, COORDINATION].into_iter().zip(by_kind) {
        by_kind_dict.set_item(segment_kind(py, name), int(py, total)?)?;
    }
    let by_operation_kind_dict = PyDict::new(py);
    for ((_, kind), (total, operation)) in by_operation_kind {
        let key = PyTuple::new(py, [operation.clone_ref(py), segment_kind(py, kind).clone().into_any().unbind()])?;
        by_operation_kind_dict.set_item(key, int(py, total)?)?;
    }

    let root = &tree.nodes[0];
    Ok(PyTuple::new(py, [
        int(py, root.start)?,
        int(py, root.end)?,
        PyTuple::new(py, segments)?.into_any().unbind(),
        exclusive_ns.into_any().unbind(),
        by_operation_dict.into_any().unbind(),
        by_service_dict.into_any().unbind(),
        by_kind_dict.into_any().unbind(),
        by_operation_kind_dict.into_any().unbind(),
        sorted_ids(py, std::mem::take(&mut tree.async_ids))?.into_any().unbind(),
        sorted_ids(py, std::mem::take(&mut tree.dropped))?.into_any().unbind(),
        sorted_ids(py, std::mem::take(&mut tree.clipped))?.into_any().unbind(),
        sorted_ids(py, std::mem::take(&mut tree.skewed))?.into_any().unbind(),
    ])?)
}
