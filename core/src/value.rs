//! Conversion between JSON values and Automerge objects, and path resolution.

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, Prop, ReadDoc, ScalarValue, Value, ROOT};
use serde_json::Value as Json;

use crate::{DocumentId, Error, Pointer};

/// Converts an Automerge scalar to JSON. Counters read as their current total.
pub(crate) fn scalar_to_json(s: &ScalarValue) -> Json {
    match s {
        ScalarValue::Str(s) => Json::String(s.to_string()),
        ScalarValue::Int(i) => Json::from(*i),
        ScalarValue::Uint(u) => Json::from(*u),
        ScalarValue::F64(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        ScalarValue::Counter(c) => Json::from(i64::from(c)),
        ScalarValue::Timestamp(t) => Json::from(*t),
        ScalarValue::Boolean(b) => Json::Bool(*b),
        ScalarValue::Bytes(b) => Json::Array(b.iter().map(|x| Json::from(*x)).collect()),
        ScalarValue::Null | ScalarValue::Unknown { .. } => Json::Null,
    }
}

/// A short name of what a value is, for error messages.
pub(crate) fn kind_of(v: &Value<'_>) -> String {
    match v {
        Value::Object(ObjType::Map) | Value::Object(ObjType::Table) => "an object".into(),
        Value::Object(ObjType::List) => "a list".into(),
        Value::Object(ObjType::Text) => "text".into(),
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Counter(_) => "a counter".into(),
            ScalarValue::Str(_) => "a string".into(),
            ScalarValue::Boolean(_) => "a boolean".into(),
            ScalarValue::Null => "null".into(),
            _ => "a number".into(),
        },
    }
}

/// Reads the value `v` (whose object id is `id`, for objects) as JSON.
pub(crate) fn value_to_json<R: ReadDoc>(doc: &R, v: &Value<'_>, id: &ObjId) -> Json {
    match v {
        Value::Scalar(s) => scalar_to_json(s),
        Value::Object(_) => object_to_json(doc, id),
    }
}

/// Reads the object `obj` as JSON.
pub(crate) fn object_to_json<R: ReadDoc>(doc: &R, obj: &ObjId) -> Json {
    match doc.object_type(obj) {
        Ok(ObjType::Map) | Ok(ObjType::Table) => {
            let mut out = serde_json::Map::new();
            for key in doc.keys(obj) {
                if let Ok(Some((v, id))) = doc.get(obj, key.as_str()) {
                    out.insert(key, value_to_json(doc, &v, &id));
                }
            }
            Json::Object(out)
        }
        Ok(ObjType::List) => {
            let len = doc.length(obj);
            let mut out = Vec::with_capacity(len);
            for i in 0..len {
                match doc.get(obj, i) {
                    Ok(Some((v, id))) => out.push(value_to_json(doc, &v, &id)),
                    _ => out.push(Json::Null),
                }
            }
            Json::Array(out)
        }
        Ok(ObjType::Text) => Json::String(doc.text(obj).unwrap_or_default()),
        Err(_) => Json::Null,
    }
}

/// The property `token` addresses inside `obj`: an index for lists, a key for maps.
pub(crate) fn prop_for<R: ReadDoc>(
    read: &R,
    obj: &ObjId,
    token: &str,
    _doc: &DocumentId,
    at: &Pointer,
) -> Result<Prop, Error> {
    match read.object_type(obj) {
        // RFC 6901: "-" is the (nonexistent) element after the last one.
        Ok(ObjType::List) | Ok(ObjType::Text) if token == "-" => Ok(Prop::Seq(read.length(obj))),
        Ok(ObjType::List) | Ok(ObjType::Text) => {
            let index: usize = token.parse().map_err(|_| Error::InvalidPath {
                path: at.to_string(),
                reason: format!(
                    "{token:?} is not a list index (the parent is a list; use 0, 1, ... or \"-\" for the end)"
                ),
            })?;
            Ok(Prop::Seq(index))
        }
        _ => Ok(Prop::Map(token.to_string())),
    }
}

/// Finds the object at `path`, or `None` if some part is missing. Errors if a part is a scalar.
pub(crate) fn resolve<R: ReadDoc>(
    doc: &R,
    id: &DocumentId,
    path: &Pointer,
) -> Result<Option<(Value<'static>, ObjId)>, Error> {
    let mut cur = ROOT;
    let mut cur_val: Value<'static> = Value::Object(ObjType::Map);
    let mut walked = Pointer::root();
    for token in path.tokens() {
        if let Value::Scalar(_) = cur_val {
            return Err(Error::WrongType {
                doc: id.clone(),
                path: walked.to_string(),
                expected: "an object or a list",
                found: kind_of(&cur_val),
            });
        }
        let prop = prop_for(doc, &cur, token, id, &walked)?;
        walked = walked.child(token.clone());
        match doc.get(&cur, prop) {
            Ok(Some((v, obj))) => {
                cur_val = v.into_owned();
                cur = obj;
            }
            Ok(None) => return Ok(None),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some((cur_val, cur)))
}

/// Finds the object at `path`, creating missing maps on the way (inside a transaction).
pub(crate) fn ensure_object<T: Transactable>(
    tx: &mut T,
    id: &DocumentId,
    path: &Pointer,
) -> Result<ObjId, Error> {
    let mut cur = ROOT;
    let mut walked = Pointer::root();
    for token in path.tokens() {
        let prop = prop_for(tx, &cur, token, id, &walked)?;
        walked = walked.child(token.clone());
        let existing = tx
            .get(&cur, prop.clone())
            .map_err(|e| Error::automerge(id, e))?;
        cur = match existing {
            Some((Value::Object(_), obj)) => obj,
            Some((v, _)) => {
                return Err(Error::WrongType {
                    doc: id.clone(),
                    path: walked.to_string(),
                    expected: "an object or a list",
                    found: kind_of(&v),
                })
            }
            None => match prop {
                Prop::Map(key) => tx
                    .put_object(&cur, key, ObjType::Map)
                    .map_err(|e| Error::automerge(id, e))?,
                Prop::Seq(index) => {
                    let len = tx.length(&cur);
                    return Err(Error::IndexOutOfRange {
                        doc: id.clone(),
                        path: walked.to_string(),
                        index,
                        len,
                    });
                }
            },
        };
    }
    Ok(cur)
}

fn json_scalar(v: &Json, id: &DocumentId, path: &Pointer) -> Result<Option<ScalarValue>, Error> {
    Ok(Some(match v {
        Json::Null => ScalarValue::Null,
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                ScalarValue::F64(f)
            } else {
                return Err(Error::InvalidValue {
                    doc: id.clone(),
                    path: path.to_string(),
                    reason: format!("number {n} is not representable"),
                });
            }
        }
        Json::Array(_) | Json::Object(_) => return Ok(None),
    }))
}

/// Writes `value` at `prop` of `obj`: objects become maps, arrays lists, the rest scalars.
pub(crate) fn put_json<T: Transactable>(
    tx: &mut T,
    id: &DocumentId,
    path: &Pointer,
    obj: &ObjId,
    prop: Prop,
    value: &Json,
    insert: bool,
) -> Result<(), Error> {
    let am = |e| Error::automerge(id, e);
    if let Some(s) = json_scalar(value, id, path)? {
        match (prop, insert) {
            (Prop::Map(k), _) => tx.put(obj, k, s).map_err(am)?,
            (Prop::Seq(i), false) => tx.put(obj, i, s).map_err(am)?,
            (Prop::Seq(i), true) => tx.insert(obj, i, s).map_err(am)?,
        }
        return Ok(());
    }
    // A whole object tree in one batch: Automerge splices its op set twice (the object and
    // all its contents), where one put per field spliced it once per field, each splice
    // decoding the columns around it (7x fewer instructions for a 6-field order).
    let tree = hydrate(value, id, path)?;
    tx.batch_create_object(obj, prop, &tree, insert)
        .map_err(am)?;
    Ok(())
}

/// `value` as an Automerge value tree: objects become maps, arrays lists, the rest scalars.
/// Fails, before anything is written, on a value Automerge cannot hold.
fn hydrate(
    value: &Json,
    id: &DocumentId,
    path: &Pointer,
) -> Result<automerge::hydrate::Value, Error> {
    use automerge::hydrate::{List, Map, Value};
    Ok(match value {
        Json::Object(map) => {
            let mut fields = std::collections::HashMap::with_capacity(map.len());
            for (k, v) in map {
                fields.insert(k.clone(), hydrate(v, id, &path.child(k.clone()))?);
            }
            Value::Map(Map::from(fields))
        }
        Json::Array(items) => {
            let mut list = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                list.push(hydrate(v, id, &path.child(i.to_string()))?);
            }
            Value::List(List::from(list))
        }
        scalar => match json_scalar(scalar, id, path)? {
            Some(s) => Value::Scalar(s),
            None => unreachable!("objects and arrays are matched above"),
        },
    })
}
