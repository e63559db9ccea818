//! Coordination delays and two-phase-commit transactions of one trace, as
//! `hopscope.processors.derive.coordination` derives them (its `_derive_coordination` and
//! `_derive_two_phase_commits` are the specification; the differential test holds the two to
//! the same records): one delay per span with a coordination kind, and the 2PC spans grouped
//! by coordinator and resource into transactions.
//!
//! The spans' kinds, the tree tops and the critical path's exclusive times come from the
//! Python side (the index every derivation shares). Values are passed through as the reference
//! passes them; what this core cannot compute the reference's way (a time past 64 bits, an id,
//! kind, service, node or resource that is not a `str` of valid UTF-8, attributes that are no
//! `dict`) returns None, and the reference derives both.

use std::collections::{BTreeMap, HashMap};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PySet, PyString, PyTuple, PyType};

use crate::index::{attr_str, attributes_of, text, time};
use crate::{or_reference, Built, RecordClass, Stop};

const ERROR_TYPE: &str = "error.type";
const COORDINATION_RESOURCE: &str = "hopscope.coordination.resource";
const COORDINATION_PARTICIPANT: &str = "hopscope.coordination.participant";
pub const KEYS: [&str; 3] = [ERROR_TYPE, COORDINATION_RESOURCE, COORDINATION_PARTICIPANT];

// Coordination kinds of a 2PC transaction, and its outcomes.
const TWO_PC_PREPARE: &str = "2pc.prepare";
const TWO_PC_COMMIT: &str = "2pc.commit";
const TWO_PC_ABORT: &str = "2pc.abort";
const COMMITTED: &str = "committed";
const ABORTED: &str = "aborted";
const IN_DOUBT: &str = "in_doubt";
pub const TWO_PC: [&str; 6] = [TWO_PC_PREPARE, TWO_PC_COMMIT, TWO_PC_ABORT, COMMITTED, ABORTED, IN_DOUBT];

fn int(py: Python<'_>, value: i128) -> PyResult<PyObject> {
    Ok(match i64::try_from(value) {
        Ok(small) => small.into_pyobject(py)?.into_any().unbind(),
        Err(_) => value.into_pyobject(py)?.into_any().unbind(),
    })
}

fn optional_int(py: Python<'_>, value: Option<i128>) -> PyResult<PyObject> {
    value.map_or_else(|| Ok(py.None()), |v| int(py, v))
}

fn optional(py: Python<'_>, value: Option<Bound<'_, PyAny>>) -> PyObject {
    value.map_or_else(|| py.None(), Bound::unbind)
}

/// `value == text`, without a Python string made for the comparison when `value` is a `str`.
fn is_text(value: &Bound<'_, PyAny>, text: &str) -> PyResult<bool> {
    match value.downcast_exact::<PyString>() {
        Ok(string) => Ok(string.to_str().is_ok_and(|s| s == text)),
        Err(_) => value.eq(text),
    }
}

/// A span as the coordination records read it.
struct Span<'py> {
    record: Bound<'py, PyAny>,
    attributes: Bound<'py, PyDict>,
    id: String,
    start: i128,
    end: i128,
}

impl<'py> Span<'py> {
    fn new(record: Bound<'py, PyAny>) -> Built<Self> {
        let py = record.py();
        let attributes = attributes_of(&record)?;
        let id = text(&record.getattr(intern!(py, "span_id"))?)?;
        let start = time(&record.getattr(intern!(py, "start_ns"))?)?;
        let end = time(&record.getattr(intern!(py, "end_ns"))?)?;
        Ok(Span { record, attributes, id, start, end })
    }

    fn get(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
        self.record.getattr(name)
    }

    fn end_of(&self) -> i128 {
        self.end.max(self.start)
    }

    fn duration(&self) -> i128 {
        (self.end - self.start).max(0)
    }

    fn attr(&self, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        attr_str(&self.attributes, &PyString::new(self.record.py(), key))
    }

    /// `_common.failed`: error status, or `error.type` set.
    fn failed(&self) -> PyResult<bool> {
        let py = self.record.py();
        Ok(is_text(&self.get(intern!(py, "status"))?, "error")?
            || attr_str(&self.attributes, intern!(py, ERROR_TYPE))?.is_some())
    }

    /// `coordination._participant`: the participant attribute, else the node, else the service.
    fn participant(&self) -> Built<String> {
        let py = self.record.py();
        if let Some(own) = attr_str(&self.attributes, intern!(py, COORDINATION_PARTICIPANT))? {
            if own.is_truthy()? {
                return text(&own);
            }
        }
        let node = self.get(intern!(py, "node"))?;
        if node.is_truthy()? {
            return text(&node);
        }
        text(&self.get(intern!(py, "service"))?)
    }
}

/// The tree as `TraceIndex.entry_above` reads it: tops, and each span's parent by id.
struct Tree<'a, 'py> {
    by_id: &'a Bound<'py, PyDict>,
    tops: &'a Bound<'py, PySet>,
}

fn is_entry(span: &Bound<'_, PyAny>) -> Built<bool> {
    let kind = text(&span.getattr(intern!(span.py(), "kind"))?)?;
    Ok(kind == "server" || kind == "consumer")
}

impl<'py> Tree<'_, 'py> {
    /// `TraceIndex.parent`: None for a top.
    fn parent(&self, span: &Bound<'py, PyAny>) -> Built<Option<Bound<'py, PyAny>>> {
        let py = span.py();
        if self.tops.contains(span.getattr(intern!(py, "span_id"))?)? {
            return Ok(None);
        }
        let parent_id = span.getattr(intern!(py, "parent_id"))?;
        self.by_id.get_item(parent_id)?.map(Some).ok_or(Stop::Reference)
    }

    /// `TraceIndex.entry_above`: the nearest entry span (or tree top) strictly above.
    fn entry_above(&self, span: &Bound<'py, PyAny>) -> Built<Option<Bound<'py, PyAny>>> {
        let Some(mut at) = self.parent(span)? else {
            return Ok(None);
        };
        loop {
            if is_entry(&at)? {
                return Ok(Some(at));
            }
            match self.parent(&at)? {
                Some(parent) => at = parent,
                None => return Ok(Some(at)),
            }
        }
    }

    /// `coordination._coordinator`: the coordinator's service span for a 2PC span.
    fn coordinator(&self, span: &Span<'py>) -> Built<Option<Bound<'py, PyAny>>> {
        let py = span.record.py();
        if is_entry(&span.record)? {
            return self.entry_above(&span.record);
        }
        let entry = self.entry_above(&span.record)?;
        let participant_side = match attr_str(&span.attributes, intern!(py, COORDINATION_PARTICIPANT))? {
            None => true,
            Some(own) => own.eq(span.get(intern!(py, "node"))?)? || own.eq(span.get(intern!(py, "service"))?)?,
        };
        if let Some(found) = &entry {
            if participant_side && is_entry(found)? {
                return Ok(Some(self.entry_above(found)?.unwrap_or_else(|| found.clone())));
            }
        }
        Ok(entry)
    }
}

/// The coordination delays and 2PC transactions of the trace whose index holds `by_id` and
/// `tops` (`coordination._derive_coordination`, `_derive_two_phase_commits`), `kinds` its
/// spans' coordination kinds, `exclusive_ns` its critical path's exclusive times; None when
/// the reference must derive them (module docstring).
#[pyfunction]
pub fn coordination<'py>(
    py: Python<'py>,
    kinds: &Bound<'py, PyDict>,
    by_id: &Bound<'py, PyDict>,
    tops: &Bound<'py, PySet>,
    exclusive_ns: &Bound<'py, PyDict>,
    delay: &Bound<'py, PyType>,
    commit: &Bound<'py, PyType>,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    or_reference(derive(py, kinds, by_id, tops, exclusive_ns, delay, commit))
}

/// A 2PC span in its transaction: its kind and the span.
type Member<'py> = (String, Span<'py>);

/// A transaction being gathered: its coordinator, resource and spans.
type Group<'py> = (Option<Bound<'py, PyAny>>, Bound<'py, PyAny>, Vec<Member<'py>>);

fn derive<'py>(
    py: Python<'py>,
    kinds: &Bound<'py, PyDict>,
    by_id: &Bound<'py, PyDict>,
    tops: &Bound<'py, PySet>,
    exclusive_ns: &Bound<'py, PyDict>,
    delay: &Bound<'py, PyType>,
    commit: &Bound<'py, PyType>,
) -> Built<Bound<'py, PyTuple>> {
    let tree = Tree { by_id, tops };
    let mut delays: Vec<(i128, String, [PyObject; 13])> = Vec::new();
    // (coordinator id, resource) → (coordinator, resource object, members), first seen first.
    let mut groups: Vec<Group<'py>> = Vec::new();
    let mut group_at: HashMap<(Option<String>, String), usize> = HashMap::new();
    for (span_id, kind) in kinds.iter() {
        let record = by_id.get_item(&span_id)?.ok_or(Stop::Reference)?;
        let span = Span::new(record)?;
        let kind_text = text(&kind)?;
        let resource = span.attr(COORDINATION_RESOURCE)?;
        let critical = match exclusive_ns.get_item(&span_id)? {
            Some(found) => found.unbind(),
            None => 0i64.into_pyobject(py)?.into_any().unbind(),
        };
        delays.push((span.start, span.id.clone(), [
            span.get(intern!(py, "trace_id"))?.unbind(),
            span.get(intern!(py, "span_id"))?.unbind(),
            span.get(intern!(py, "parent_id"))?.unbind(),
            span.get(intern!(py, "name"))?.unbind(),
            kind.clone().unbind(),
            span.get(intern!(py, "service"))?.unbind(),
            span.get(intern!(py, "node"))?.unbind(),
            optional(py, resource.clone()),
            optional(py, span.attr(COORDINATION_PARTICIPANT)?),
            span.get(intern!(py, "start_ns"))?.unbind(),
            int(py, span.duration())?,
            critical,
            PyBool::new(py, span.failed()?).to_owned().into_any().unbind(),
        ]));
        // A 2PC span with a transaction id joins its coordinator's transaction.
        if !matches!(kind_text.as_str(), TWO_PC_PREPARE | TWO_PC_COMMIT | TWO_PC_ABORT) {
            continue;
        }
        let Some(resource) = resource else {
            continue; // no transaction id: nothing ties it to the other phases
        };
        let coordinator = tree.coordinator(&span)?;
        let coordinator_id = match &coordinator {
            Some(found) => Some(text(&found.getattr(intern!(py, "span_id"))?)?),
            None => None,
        };
        let key = (coordinator_id, text(&resource)?);
        let at = match group_at.get(&key) {
            Some(&at) => at,
            None => {
                group_at.insert(key, groups.len());
                groups.push((coordinator, resource, Vec::new()));
                groups.len() - 1
            }
        };
        groups[at].2.push((kind_text, span));
    }
    delays.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let delay_class = RecordClass::new(py, delay.as_any(), 13)?;
    let delay_list = PyList::empty(py);
    for (_, _, fields) in delays {
        delay_list.append(delay_class.build(py, fields)?)?;
    }

    let mut commits: Vec<((i128, String, String), [PyObject; 12])> = Vec::new();
    for (coordinator, resource, members) in groups {
        // A participant answers when its (last) prepare ends.
        let mut answers: BTreeMap<String, i128> = BTreeMap::new();
        let (mut prepare_ns, mut commit_ns): (Option<i128>, Option<i128>) = (None, None);
        let mut aborted = false;
        let mut finished = false;
        for (kind, span) in &members {
            if kind == TWO_PC_PREPARE {
                let who = span.participant()?;
                let answer = answers.entry(who).or_insert(span.end_of());
                *answer = (*answer).max(span.end_of());
                prepare_ns = Some(prepare_ns.map_or(span.duration(), |d| d.max(span.duration())));
                aborted |= span.failed()?;
            } else {
                finished = true;
                commit_ns = Some(commit_ns.map_or(span.duration(), |d| d.max(span.duration())));
            }
            aborted |= kind == TWO_PC_ABORT;
        }
        // By name, so the first of the latest answers is the smallest name.
        let mut straggler: Option<(&String, i128)> = None;
        for (who, &end) in &answers {
            if straggler.is_none_or(|(_, best)| end > best) {
                straggler = Some((who, end));
            }
        }
        let names: Vec<String> = if answers.is_empty() {
            let mut names = members.iter().map(|(_, s)| s.participant()).collect::<Built<Vec<_>>>()?;
            names.sort_unstable();
            names.dedup();
            names
        } else {
            answers.keys().cloned().collect()
        };
        let blocked = if answers.is_empty() {
            None
        } else {
            let ends = answers.values();
            Some(ends.clone().max().expect("answers") - ends.min().expect("answers"))
        };
        let outcome = if aborted {
            ABORTED
        } else if finished {
            COMMITTED
        } else {
            IN_DOUBT
        };
        let start = members.iter().map(|(_, s)| s.start).min().expect("a transaction has a member");
        let (coordinator_id, coordinator_service, coordinator_key) = match &coordinator {
            Some(found) => {
                let id = found.getattr(intern!(py, "span_id"))?;
                let key = text(&id)?;
                (id.unbind(), found.getattr(intern!(py, "service"))?.unbind(), key)
            }
            None => (py.None(), py.None(), String::new()),
        };
        let resource_key = text(&resource)?;
        commits.push(((start, resource_key, coordinator_key), [
            members[0].1.get(intern!(py, "trace_id"))?.unbind(),
            resource.unbind(),
            coordinator_id,
            coordinator_service,
            int(py, start)?,
            names.len().into_pyobject(py)?.into_any().unbind(),
            PyTuple::new(py, &names)?.into_any().unbind(),
            optional_int(py, prepare_ns)?,
            optional_int(py, commit_ns)?,
            match straggler {
                Some((who, _)) => PyString::new(py, who).into_any().unbind(),
                None => py.None(),
            },
            optional_int(py, blocked)?,
            PyString::new(py, outcome).into_any().unbind(),
        ]));
    }
    commits.sort_by(|a, b| a.0.cmp(&b.0));
    let commit_class = RecordClass::new(py, commit.as_any(), 12)?;
    let commit_list = PyList::empty(py);
    for (_, fields) in commits {
        commit_list.append(commit_class.build(py, fields)?)?;
    }
    Ok(PyTuple::new(py, [delay_list.into_any(), commit_list.into_any()])?)
}
