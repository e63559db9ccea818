//! The protobuf wire format, as far as OTLP's trace and log requests need it.
//!
//! The parse is strict where the Python reference is lenient or where its runtime does
//! something this decoder does not reproduce (invalid UTF-8, a singular message field sent
//! twice, which protobuf merges; a known field of the wrong wire type; groups; entity refs):
//! each of those makes the whole message `Bail`, and the Python reference decodes it. So the
//! records built here are the reference's whenever a message is decoded here at all.

/// Why a message is not decoded natively: the caller hands it to the Python reference.
#[derive(Debug)]
pub struct Bail;

pub type Parsed<T> = Result<T, Bail>;

/// One field's value as it is on the wire.
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of one message, in wire order.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn varint(&mut self) -> Parsed<u64> {
        let mut value: u64 = 0;
        for shift in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(Bail)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * shift);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Bail)
    }

    fn take(&mut self, n: usize) -> Parsed<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Bail)?;
        let out = self.buf.get(self.pos..end).ok_or(Bail)?;
        self.pos = end;
        Ok(out)
    }

    /// The next field (number, value), None at the end of the message.
    pub fn next_field(&mut self) -> Parsed<Option<(u32, Value<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(Bail);
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                let raw = self.take(8)?;
                Value::Fixed64(u64::from_le_bytes(raw.try_into().map_err(|_| Bail)?))
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Bail)?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                let raw = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes(raw.try_into().map_err(|_| Bail)?))
            }
            _ => return Err(Bail), // groups (3, 4) and reserved wire types
        };
        Ok(Some((number as u32, value)))
    }
}

pub fn bytes(value: Value<'_>) -> Parsed<&[u8]> {
    match value {
        Value::Bytes(raw) => Ok(raw),
        _ => Err(Bail),
    }
}

/// A string field: valid UTF-8 or the whole message goes to the reference (its lenient parse).
pub fn string(value: Value<'_>) -> Parsed<&str> {
    std::str::from_utf8(bytes(value)?).map_err(|_| Bail)
}

pub fn varint(value: Value<'_>) -> Parsed<u64> {
    match value {
        Value::Varint(v) => Ok(v),
        _ => Err(Bail),
    }
}

pub fn fixed64(value: Value<'_>) -> Parsed<u64> {
    match value {
        Value::Fixed64(v) => Ok(v),
        _ => Err(Bail),
    }
}

pub fn fixed32(value: Value<'_>) -> Parsed<u32> {
    match value {
        Value::Fixed32(v) => Ok(v),
        _ => Err(Bail),
    }
}

/// A singular message field seen once: a second occurrence would be merged by protobuf.
pub fn once<'a>(slot: &mut Option<&'a [u8]>, value: Value<'a>) -> Parsed<()> {
    if slot.is_some() {
        return Err(Bail);
    }
    *slot = Some(bytes(value)?);
    Ok(())
}

// -- OTLP messages --------------------------------------------------------------------------

/// common.v1.AnyValue.
pub enum Any<'a> {
    Unset,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Array(Vec<Any<'a>>),
    Kvlist(Vec<KeyValue<'a>>),
}

pub struct KeyValue<'a> {
    pub key: &'a str,
    pub value: Any<'a>,
}

pub fn any_value(buf: &[u8]) -> Parsed<Any<'_>> {
    let mut fields = Fields::new(buf);
    let mut out = Any::Unset;
    let mut set = false;
    while let Some((number, value)) = fields.next_field()? {
        if (1..=7).contains(&number) {
            if set {
                return Err(Bail); // a oneof set twice: last wins, or merges (arrays, maps)
            }
            set = true;
        }
        out = match number {
            1 => Any::Str(string(value)?),
            2 => Any::Bool(varint(value)? != 0),
            3 => Any::Int(varint(value)? as i64),
            4 => Any::Double(f64::from_bits(fixed64(value)?)),
            5 => Any::Array(repeated(bytes(value)?, any_value)?),
            6 => Any::Kvlist(repeated(bytes(value)?, key_value)?),
            7 => Any::Bytes(bytes(value)?),
            _ => continue,
        };
    }
    Ok(out)
}

/// The messages of a repeated field 1 (`values` of ArrayValue and KeyValueList), each parsed
/// by `parse`.
fn repeated<'a, T>(buf: &'a [u8], parse: fn(&'a [u8]) -> Parsed<T>) -> Parsed<Vec<T>> {
    let mut fields = Fields::new(buf);
    let mut out = Vec::new();
    while let Some((number, value)) = fields.next_field()? {
        if number == 1 {
            out.push(parse(bytes(value)?)?);
        }
    }
    Ok(out)
}

pub fn key_value(buf: &[u8]) -> Parsed<KeyValue<'_>> {
    let mut fields = Fields::new(buf);
    let mut key = "";
    let mut raw: Option<&[u8]> = None;
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => key = string(value)?,
            2 => once(&mut raw, value)?,
            _ => {}
        }
    }
    let value = match raw {
        Some(raw) => any_value(raw)?,
        None => Any::Unset,
    };
    Ok(KeyValue { key, value })
}

/// Resource: its attributes (entity refs are left to the reference).
pub fn resource(buf: &[u8]) -> Parsed<Vec<KeyValue<'_>>> {
    let mut fields = Fields::new(buf);
    let mut out = Vec::new();
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => out.push(key_value(bytes(value)?)?),
            2 => {
                varint(value)?;
            }
            3 => return Err(Bail),
            _ => {}
        }
    }
    Ok(out)
}

/// InstrumentationScope: not read, only checked as the reference's parse checks it.
pub fn scope(buf: &[u8]) -> Parsed<()> {
    let mut fields = Fields::new(buf);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 | 2 => {
                string(value)?;
            }
            3 => {
                key_value(bytes(value)?)?;
            }
            4 => {
                varint(value)?;
            }
            _ => {}
        }
    }
    Ok(())
}

pub struct Event<'a> {
    pub time: u64,
    pub name: &'a str,
    pub attributes: Vec<KeyValue<'a>>,
}

pub struct Link<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub attributes: Vec<KeyValue<'a>>,
}

#[derive(Default)]
pub struct Span<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_id: &'a [u8],
    pub name: &'a str,
    pub kind: i32,
    pub start: u64,
    pub end: u64,
    pub attributes: Vec<KeyValue<'a>>,
    pub events: Vec<Event<'a>>,
    pub links: Vec<Link<'a>>,
    pub status_message: &'a str,
    pub status_code: i32,
}

fn event(buf: &[u8]) -> Parsed<Event<'_>> {
    let mut fields = Fields::new(buf);
    let mut out = Event { time: 0, name: "", attributes: Vec::new() };
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => out.time = fixed64(value)?,
            2 => out.name = string(value)?,
            3 => out.attributes.push(key_value(bytes(value)?)?),
            4 => {
                varint(value)?;
            }
            _ => {}
        }
    }
    Ok(out)
}

fn link(buf: &[u8]) -> Parsed<Link<'_>> {
    let mut fields = Fields::new(buf);
    let mut out = Link { trace_id: b"", span_id: b"", attributes: Vec::new() };
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => out.trace_id = bytes(value)?,
            2 => out.span_id = bytes(value)?,
            3 => {
                string(value)?;
            }
            4 => out.attributes.push(key_value(bytes(value)?)?),
            5 => {
                varint(value)?;
            }
            6 => {
                fixed32(value)?;
            }
            _ => {}
        }
    }
    Ok(out)
}

fn status<'a>(buf: &'a [u8], span: &mut Span<'a>) -> Parsed<()> {
    let mut fields = Fields::new(buf);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            2 => span.status_message = string(value)?,
            3 => span.status_code = varint(value)? as i32,
            _ => {}
        }
    }
    Ok(())
}

pub fn span(buf: &[u8]) -> Parsed<Span<'_>> {
    let mut fields = Fields::new(buf);
    let mut out = Span::default();
    let mut status_raw: Option<&[u8]> = None;
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => out.trace_id = bytes(value)?,
            2 => out.span_id = bytes(value)?,
            3 => {
                string(value)?;
            }
            4 => out.parent_id = bytes(value)?,
            5 => out.name = string(value)?,
            6 => out.kind = varint(value)? as i32,
            7 => out.start = fixed64(value)?,
            8 => out.end = fixed64(value)?,
            9 => out.attributes.push(key_value(bytes(value)?)?),
            10 | 12 | 14 => {
                varint(value)?;
            }
            11 => out.events.push(event(bytes(value)?)?),
            13 => out.links.push(link(bytes(value)?)?),
            15 => once(&mut status_raw, value)?,
            16 => {
                fixed32(value)?;
            }
            _ => {}
        }
    }
    if let Some(raw) = status_raw {
        status(raw, &mut out)?;
    }
    Ok(out)
}

#[derive(Default)]
pub struct Log<'a> {
    pub time: u64,
    pub observed: u64,
    pub severity_number: i32,
    pub severity_text: &'a str,
    pub body: Option<&'a [u8]>,
    pub attributes: Vec<KeyValue<'a>>,
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub event_name: &'a str,
}

pub fn log(buf: &[u8]) -> Parsed<Log<'_>> {
    let mut fields = Fields::new(buf);
    let mut out = Log::default();
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => out.time = fixed64(value)?,
            11 => out.observed = fixed64(value)?,
            2 => out.severity_number = varint(value)? as i32,
            3 => out.severity_text = string(value)?,
            5 => once(&mut out.body, value)?,
            6 => out.attributes.push(key_value(bytes(value)?)?),
            7 => {
                varint(value)?;
            }
            8 => {
                fixed32(value)?;
            }
            9 => out.trace_id = bytes(value)?,
            10 => out.span_id = bytes(value)?,
            12 => out.event_name = string(value)?,
            _ => {}
        }
    }
    Ok(out)
}

/// One resource of a request (ResourceSpans / ResourceLogs) with its scopes' records.
pub struct Resource<'a, T> {
    pub attributes: Vec<KeyValue<'a>>,
    pub records: Vec<T>,
}

/// ExportTraceServiceRequest / ExportLogsServiceRequest: resources, scopes, records.
pub fn request<'a, T>(
    buf: &'a [u8],
    record: fn(&'a [u8]) -> Parsed<T>,
) -> Parsed<Vec<Resource<'a, T>>> {
    let mut fields = Fields::new(buf);
    let mut out = Vec::new();
    while let Some((number, value)) = fields.next_field()? {
        if number != 1 {
            continue;
        }
        let mut inner = Fields::new(bytes(value)?);
        let mut resource_raw: Option<&[u8]> = None;
        let mut records = Vec::new();
        while let Some((number, value)) = inner.next_field()? {
            match number {
                1 => once(&mut resource_raw, value)?,
                2 => {
                    let mut scope_fields = Fields::new(bytes(value)?);
                    let mut scope_raw: Option<&[u8]> = None;
                    while let Some((number, value)) = scope_fields.next_field()? {
                        match number {
                            1 => once(&mut scope_raw, value)?,
                            2 => records.push(record(bytes(value)?)?),
                            3 => {
                                string(value)?;
                            }
                            _ => {}
                        }
                    }
                    if let Some(raw) = scope_raw {
                        scope(raw)?;
                    }
                }
                3 => {
                    string(value)?;
                }
                _ => {}
            }
        }
        let attributes = match resource_raw {
            Some(raw) => resource(raw)?,
            None => Vec::new(),
        };
        out.push(Resource { attributes, records });
    }
    Ok(out)
}
