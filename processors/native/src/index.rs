//! One trace's spans indexed once, as `hopscope.processors.derive._common.TraceIndex` indexes
//! them (its Python construction is the specification; the differential test holds the two to
//! the same fields): duplicates (the first wins, conflicting ones counted), the raw and the tree
//! children, roots, orphans, parent cycles broken at their earliest member, the main root and
//! the detached tops, the breadth-first order, the SERVER span answering each CLIENT span, the
//! spans' coordination kinds (no rules: the attribute alone) and whether any span ends before
//! it starts.
//!
//! The index is handed back as the Python objects the derivations share (the critical path's
//! walk, the hops, the failovers, the coordination delays and 2PC transactions read them), so a
//! trace crosses into this core once for its tree. What this core cannot index the reference's
//! way returns None and the reference indexes the trace: a span of unspecified kind (the kinds
//! are inferred, records replaced), an id, parent id, kind or trace id that is not a `str` of
//! valid UTF-8, a time past 64 bits, attributes that are no `dict`.

use std::collections::HashMap;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyString, PyTuple};

use crate::{or_reference, Built, Stop};

const KIND_UNSPECIFIED: &str = "kind_unspecified";
const COORDINATION_KIND: &str = "hopscope.coordination.kind";
pub const KEYS: [&str; 1] = [COORDINATION_KIND];

/// A `str` (exactly) of valid UTF-8, as Rust text; anything else goes to the reference.
pub(crate) fn text(value: &Bound<'_, PyAny>) -> Built<String> {
    match value.downcast_exact::<PyString>() {
        Ok(string) => Ok(string.to_str().map_err(|_| Stop::Reference)?.to_owned()),
        Err(_) => Err(Stop::Reference),
    }
}

/// A time that fits 64 bits, computed in 128.
pub(crate) fn time(value: &Bound<'_, PyAny>) -> Built<i128> {
    value.extract::<i64>().map(i128::from).map_err(|_| Stop::Reference)
}

/// `_common.attr_str`: the attribute as a non-empty string, or None.
pub(crate) fn attr_str<'py>(
    attributes: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(value) = attributes.get_item(key)? else {
        return Ok(None);
    };
    if value.is_exact_instance_of::<PyString>() {
        return Ok(if value.len()? == 0 { None } else { Some(value) });
    }
    if value.is_none() || value.eq("")? {
        return Ok(None);
    }
    Ok(Some(value.str()?.into_any()))
}

/// A span's attributes, when they are a `dict`.
pub(crate) fn attributes_of<'py>(span: &Bound<'py, PyAny>) -> Built<Bound<'py, PyDict>> {
    span.getattr(intern!(span.py(), "attributes"))?.downcast_into::<PyDict>().map_err(|_| Stop::Reference)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Server,
    Client,
    Other,
}

/// A span as the index reads it.
struct Entry<'py> {
    span: Bound<'py, PyAny>,
    id: Bound<'py, PyString>,
    id_text: String,
    parent: Option<(Bound<'py, PyString>, String)>,
    kind: Kind,
    trace_text: String,
    start: i128,
    end: i128,
}

impl Entry<'_> {
    /// `_earliest`'s key: the earliest start, then the longest, then the smallest id.
    fn earliest_key(&self) -> (i128, i128, &str) {
        (self.start, -(self.end - self.start).max(0), &self.id_text)
    }
}

fn entry<'py>(span: Bound<'py, PyAny>, id: Bound<'py, PyString>, id_text: String) -> Built<Entry<'py>> {
    let py = span.py();
    let parent_value = span.getattr(intern!(py, "parent_id"))?;
    let parent = if parent_value.is_none() {
        None
    } else {
        let parent_text = text(&parent_value)?;
        if parent_text.is_empty() {
            None // a falsy parent id: a root
        } else {
            Some((parent_value.downcast_into_exact::<PyString>().map_err(|_| Stop::Reference)?, parent_text))
        }
    };
    let kind = match text(&span.getattr(intern!(py, "kind"))?)?.as_str() {
        "server" => Kind::Server,
        "client" => Kind::Client,
        _ => Kind::Other,
    };
    let trace_text = text(&span.getattr(intern!(py, "trace_id"))?)?;
    let start = time(&span.getattr(intern!(py, "start_ns"))?)?;
    let end = time(&span.getattr(intern!(py, "end_ns"))?)?;
    Ok(Entry { span, id, id_text, parent, kind, trace_text, start, end })
}

/// The forest being grown (`TraceIndex._grow`, `_break_cycles`).
struct Forest {
    raw: Vec<Vec<usize>>, // a span's raw children, by its position
    children: Vec<Vec<usize>>,
    children_order: Vec<usize>, // parents in the order their first tree child came
    top_down: Vec<usize>,
    is_top: Vec<bool>,
}

impl Forest {
    fn grow(&mut self, top: usize) {
        self.is_top[top] = true;
        self.top_down.push(top);
        let mut reached = self.top_down.len() - 1;
        while reached < self.top_down.len() {
            let parent = self.top_down[reached];
            reached += 1;
            for i in 0..self.raw[parent].len() {
                let child = self.raw[parent][i];
                // Only a cycle root (already a top) can be met again: each span has one parent.
                if self.is_top[child] {
                    continue;
                }
                if self.children[parent].is_empty() {
                    self.children_order.push(parent);
                }
                self.children[parent].push(child);
                self.top_down.push(child);
            }
        }
    }
}

fn earliest(entries: &[Entry<'_>], among: &[usize]) -> Option<usize> {
    among.iter().copied().min_by(|&a, &b| entries[a].earliest_key().cmp(&entries[b].earliest_key()))
}

/// The fields of a `TraceIndex` built from `spans` (the order `_common._native_index` takes
/// them in), or None when the reference must index the trace (module docstring).
#[pyfunction]
pub fn trace_index<'py>(py: Python<'py>, spans: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyTuple>>> {
    or_reference(build(py, spans))
}

fn list<'py>(py: Python<'py>, entries: &[Entry<'py>], at: &[usize]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, at.iter().map(|&i| &entries[i].span))
}

fn build<'py>(py: Python<'py>, spans: &Bound<'py, PyAny>) -> Built<Bound<'py, PyTuple>> {
    // Duplicates: the first span with an id wins.
    let mut entries: Vec<Entry<'py>> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    let mut conflicting = 0usize;
    for span in spans.try_iter()? {
        let span = span?;
        let id_value = span.getattr(intern!(py, "span_id"))?;
        let id_text = text(&id_value)?;
        if let Some(&known) = position.get(&id_text) {
            let known = &entries[known].span;
            if !known.is(&span) && known.ne(&span)? {
                conflicting += 1;
            }
            continue; // an identical duplicate has the flags of the span kept
        }
        if span.getattr(intern!(py, "flags"))?.contains(intern!(py, KIND_UNSPECIFIED))? {
            return Err(Stop::Reference); // kinds to infer: the reference replaces records
        }
        let id = id_value.downcast_into_exact::<PyString>().map_err(|_| Stop::Reference)?;
        position.insert(id_text.clone(), entries.len());
        entries.push(entry(span, id, id_text)?);
    }
    let n = entries.len();

    // Children as recorded, by parent id, including parents missing from the trace.
    let mut forest = Forest {
        raw: vec![Vec::new(); n],
        children: vec![Vec::new(); n],
        children_order: Vec::new(),
        top_down: Vec::with_capacity(n),
        is_top: vec![false; n],
    };
    let mut missing: Vec<(usize, Vec<usize>)> = Vec::new(); // (first child, children) per absent parent
    let mut missing_at: HashMap<&str, usize> = HashMap::new();
    let mut raw_order: Vec<(bool, usize)> = Vec::new(); // (present, index) in first-seen order
    let mut roots = Vec::new();
    let mut orphans = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let Some((_, parent)) = &e.parent else {
            roots.push(i);
            continue;
        };
        match position.get(parent) {
            Some(&p) => {
                if forest.raw[p].is_empty() {
                    raw_order.push((true, p));
                }
                forest.raw[p].push(i);
            }
            None => {
                orphans.push(i);
                match missing_at.get(parent.as_str()) {
                    Some(&m) => missing[m].1.push(i),
                    None => {
                        missing_at.insert(parent, missing.len());
                        raw_order.push((false, missing.len()));
                        missing.push((i, vec![i]));
                    }
                }
            }
        }
    }
    for &top in roots.iter().chain(&orphans) {
        forest.grow(top);
    }

    // Spans not reached from a root or orphan sit in, or hang below, a parent cycle.
    let mut cycle_roots = Vec::new();
    if forest.top_down.len() < n {
        let mut reached = vec![false; n];
        for &i in &forest.top_down {
            reached[i] = true;
        }
        let mut unreached: Vec<usize> = (0..n).filter(|&i| !reached[i]).collect();
        unreached.sort_by(|&a, &b| entries[a].earliest_key().cmp(&entries[b].earliest_key()));
        for span in unreached {
            if reached[span] {
                continue;
            }
            // Walk up until a span repeats: that span is on the cycle.
            let parent_of = |i: usize| -> Built<usize> {
                let (_, parent) = entries[i].parent.as_ref().ok_or(Stop::Reference)?;
                position.get(parent).copied().ok_or(Stop::Reference)
            };
            let mut seen = vec![false; 0];
            seen.resize(n, false);
            let mut current = span;
            while !seen[current] {
                seen[current] = true;
                current = parent_of(current)?;
            }
            let mut cycle = vec![current];
            let mut member = parent_of(current)?;
            while member != current {
                cycle.push(member);
                member = parent_of(member)?;
            }
            let top = earliest(&entries, &cycle).expect("a cycle has a member");
            cycle_roots.push(top);
            let before = forest.top_down.len();
            forest.grow(top);
            for &i in &forest.top_down[before..] {
                reached[i] = true;
            }
        }
    }

    let main_root = earliest(&entries, &roots)
        .or_else(|| earliest(&entries, &orphans))
        .or_else(|| earliest(&entries, &cycle_roots));
    let detached: Vec<usize> =
        roots.iter().chain(&orphans).chain(&cycle_roots).copied().filter(|&i| Some(i) != main_root).collect();

    // CLIENT span → the SERVER span answering it: the earliest (ties: the smallest id).
    let mut server_of: Vec<Option<usize>> = vec![None; n];
    let mut server_order: Vec<usize> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let Some((_, parent)) = &e.parent else { continue };
        if e.kind != Kind::Server {
            continue;
        }
        let Some(&client) = position.get(parent) else { continue };
        let c = &entries[client];
        if c.kind != Kind::Client || c.trace_text != e.trace_text {
            continue;
        }
        match server_of[client] {
            None => {
                server_order.push(client);
                server_of[client] = Some(i);
            }
            Some(known) => {
                let k = &entries[known];
                if (e.start, &e.id_text) < (k.start, &k.id_text) {
                    server_of[client] = Some(i);
                }
            }
        }
    }

    // Coordination kinds from the attribute (`coordination_kinds(())`), and end < start.
    let kinds = PyDict::new(py);
    let key = intern!(py, COORDINATION_KIND);
    for e in &entries {
        if let Some(kind) = attr_str(&attributes_of(&e.span)?, key)? {
            kinds.set_item(&e.id, kind)?;
        }
    }
    let end_before_start = entries.iter().any(|e| e.end < e.start);

    // The Python objects.
    let by_id = PyDict::new(py);
    for e in &entries {
        by_id.set_item(&e.id, &e.span)?;
    }
    let raw_children = PyDict::new(py);
    for (present, i) in raw_order {
        if present {
            raw_children.set_item(&entries[i].id, list(py, &entries, &forest.raw[i])?)?;
        } else {
            let (first, listed) = &missing[i];
            let parent = &entries[*first].parent.as_ref().expect("an orphan has a parent id").0;
            raw_children.set_item(parent, list(py, &entries, listed)?)?;
        }
    }
    let children = PyDict::new(py);
    for &p in &forest.children_order {
        children.set_item(&entries[p].id, list(py, &entries, &forest.children[p])?)?;
    }
    let tops = PySet::empty(py)?;
    for (i, e) in entries.iter().enumerate() {
        if forest.is_top[i] {
            tops.add(&e.id)?;
        }
    }
    let servers = PyDict::new(py);
    for client in server_order {
        let server = server_of[client].expect("listed with its server");
        servers.set_item(&entries[client].id, &entries[server].span)?;
    }
    let all: Vec<usize> = (0..n).collect();
    let trace_id: PyObject = match entries.first() {
        Some(first) => first.span.getattr(intern!(py, "trace_id"))?.unbind(),
        None => PyString::new(py, "").into_any().unbind(),
    };
    let main_root: PyObject = match main_root {
        Some(i) => entries[i].span.clone().unbind(),
        None => py.None(),
    };
    Ok(PyTuple::new(py, [
        list(py, &entries, &all)?.into_any().unbind(),
        by_id.into_any().unbind(),
        trace_id,
        conflicting.into_pyobject(py)?.into_any().unbind(),
        raw_children.into_any().unbind(),
        list(py, &entries, &roots)?.into_any().unbind(),
        list(py, &entries, &orphans)?.into_any().unbind(),
        list(py, &entries, &cycle_roots)?.into_any().unbind(),
        children.into_any().unbind(),
        list(py, &entries, &forest.top_down)?.into_any().unbind(),
        tops.into_any().unbind(),
        main_root,
        list(py, &entries, &detached)?.into_any().unbind(),
        servers.into_any().unbind(),
        kinds.into_any().unbind(),
        pyo3::types::PyBool::new(py, end_before_start).to_owned().into_any().unbind(),
    ])?)
}
