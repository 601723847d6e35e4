//! JSON decoding with the rules of Go's `encoding/json`, which upstream configs in the
//! wild rely on:
//!
//! - a key matches a known struct field case-insensitively (`"bandWidth"` fills
//!   `bandwidth`); an exact-case key wins over a folded one;
//! - a `null` value leaves the field at its default;
//! - unknown keys are ignored.
//!
//! It works for any `Deserialize` type: a struct learns its field names from serde
//! (`deserialize_struct`), so nested structs fold their keys too. Structs decoded this
//! way must not use `#[serde(flatten)]` (serde then hides the field list).

use serde::Deserializer;
use serde::de::value::StringDeserializer;
use serde::de::{
    DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Value};

/// Decodes `T` from bytes the way Go's `json.Unmarshal` fills a struct.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    from_value(serde_json::from_slice(bytes)?)
}

/// Decodes `T` from an already parsed JSON value the way Go fills a struct. An
/// error names the key where it happened (`ipam.ranges[0]: invalid type: ...`), as
/// Go's names the struct field.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    let path = Path::default();
    T::deserialize(GoValue(value, &path)).map_err(|e| match path.render() {
        None => e,
        Some(at) => serde::de::Error::custom(format!("{at}: {e}")),
    })
}

/// Where decoding is: a step is pushed before a member is decoded and popped when
/// it decoded, so after an error the steps lead to the member that failed. (Kept
/// by hand rather than by a wrapping deserializer: one less generic layer for every
/// config type in the binary.)
#[derive(Default)]
struct Path(std::cell::RefCell<Vec<Step>>);

enum Step {
    Key(String),
    Index(usize),
}

impl Path {
    fn push(&self, step: Step) {
        self.0.borrow_mut().push(step);
    }

    fn pop(&self) {
        self.0.borrow_mut().pop();
    }

    /// `a.b[0].c`, or `None` at the top.
    fn render(&self) -> Option<String> {
        let steps = self.0.borrow();
        if steps.is_empty() {
            return None;
        }
        let mut out = String::new();
        for step in steps.iter() {
            match step {
                Step::Key(key) if out.is_empty() => out.push_str(key),
                Step::Key(key) => {
                    out.push('.');
                    out.push_str(key);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        Some(out)
    }
}

/// Renames keys of `object` that fold to one of `fields` to that field's exact name,
/// and drops `null` values of known fields so that they take their default.
fn fold_keys(object: Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    let mut folded = Vec::new();
    for (key, value) in object {
        if fields.contains(&key.as_str()) {
            if !value.is_null() {
                out.insert(key, value);
            }
        } else if let Some(field) = fields.iter().find(|f| f.eq_ignore_ascii_case(&key)) {
            folded.push((field.to_string(), value));
        } else {
            out.insert(key, value);
        }
    }
    for (field, value) in folded {
        if !value.is_null() && !out.contains_key(&field) {
            out.insert(field, value);
        }
    }
    out
}

struct GoValue<'a>(Value, &'a Path);

impl<'de> Deserializer<'de> for GoValue<'_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(GoSeq {
                items: items.into_iter(),
                next: 0,
                path: self.1,
            }),
            Value::Object(object) => visitor.visit_map(GoMap {
                entries: object.into_iter(),
                value: None,
                path: self.1,
            }),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(GoValue(other, self.1)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(object) => visitor.visit_map(GoMap {
                entries: fold_keys(object, fields).into_iter(),
                value: None,
                path: self.1,
            }),
            // Go decodes a struct from an object only; serde would also take an
            // array, field by field (`"dns": []` would pass as empty DNS settings).
            Value::Array(_) => Err(serde::de::Error::invalid_type(
                serde::de::Unexpected::Seq,
                &"an object",
            )),
            other => GoValue(other, self.1).deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct GoSeq<'a> {
    items: std::vec::IntoIter<Value>,
    next: usize,
    path: &'a Path,
}

impl<'de> SeqAccess<'de> for GoSeq<'_> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        self.path.push(Step::Index(self.next));
        self.next += 1;
        let decoded = seed.deserialize(GoValue(item, self.path))?;
        self.path.pop();
        Ok(Some(decoded))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct GoMap<'a> {
    entries: serde_json::map::IntoIter,
    value: Option<(String, Value)>,
    path: &'a Path,
}

impl<'de> MapAccess<'de> for GoMap<'_> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some((key.clone(), value));
                let key: StringDeserializer<serde_json::Error> = key.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (key, value) = self.value.take().unwrap_or((String::new(), Value::Null));
        self.path.push(Step::Key(key));
        let decoded = seed.deserialize(GoValue(value, self.path))?;
        self.path.pop();
        Ok(decoded)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// The keys that occur twice in one object that is the value of a key named `under`
/// (in any case), anywhere in the JSON `bytes`. Decoding keeps only the last of
/// them, so a plugin that must refuse duplicates (tuning's `sysctl`, as upstream)
/// asks the raw text.
pub fn duplicate_keys_under(bytes: &[u8], under: &str) -> Result<Vec<String>, serde_json::Error> {
    let found = std::cell::RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(bytes);
    DuplicateWalk {
        under,
        inside: false,
        found: &found,
    }
    .deserialize(&mut de)?;
    Ok(found.into_inner())
}

/// Visits every value of a JSON document, noting repeated keys of the objects that
/// are values of an `under` key.
struct DuplicateWalk<'a> {
    under: &'a str,
    inside: bool,
    found: &'a std::cell::RefCell<Vec<String>>,
}

impl DuplicateWalk<'_> {
    fn child(&self, inside: bool) -> Self {
        DuplicateWalk {
            under: self.under,
            inside,
            found: self.found,
        }
    }
}

impl<'de> DeserializeSeed<'de> for DuplicateWalk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DuplicateWalk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let inside = key.eq_ignore_ascii_case(self.under);
            if self.inside && !seen.insert(key.clone()) {
                self.found.borrow_mut().push(key);
            }
            map.next_value_seed(self.child(inside))?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self.child(false))?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn duplicate_keys_under_a_key_are_found_in_the_raw_text() {
        let text = br#"{"sysctl": {"a": "1", "b": "2", "a": "3"},
            "args": {"cni": {"SysCtl": {"x": "1", "x": "2"}}}, "other": {"y": 1, "y": 2}}"#;
        assert_eq!(
            super::duplicate_keys_under(text, "sysctl").unwrap(),
            vec!["a".to_string(), "x".to_string()]
        );
        assert!(
            super::duplicate_keys_under(br#"{"sysctl": {"a": "1"}}"#, "sysctl")
                .unwrap()
                .is_empty()
        );
        assert!(super::duplicate_keys_under(b"{", "sysctl").is_err());
    }
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, Default, PartialEq)]
    #[serde(rename_all = "camelCase", default)]
    struct Rate {
        ingress_rate: u64,
        egress_burst: Option<u64>,
    }

    #[derive(Deserialize, Debug, Default, PartialEq)]
    #[serde(rename_all = "camelCase", default)]
    struct Conf {
        name: String,
        is_gateway: bool,
        bandwidth: Option<Rate>,
        list: Vec<Rate>,
        other: std::collections::BTreeMap<String, Value>,
    }

    #[test]
    fn keys_fold_case_insensitively_at_every_depth() {
        let c: Conf = from_slice(
            br#"{"NAME":"n","isgateway":true,"bandWidth":{"INGRESSRATE":5,"egressBurst":7},
                 "List":[{"IngressRate":1}],"other":{"KeepCase":null}}"#,
        )
        .expect("decodes");
        assert_eq!(c.name, "n");
        assert!(c.is_gateway);
        assert_eq!(
            c.bandwidth,
            Some(Rate {
                ingress_rate: 5,
                egress_burst: Some(7)
            })
        );
        assert_eq!(
            c.list,
            vec![Rate {
                ingress_rate: 1,
                egress_burst: None
            }]
        );
        // Map keys are data, not field names: they keep their case and their nulls.
        assert_eq!(c.other.get("KeepCase"), Some(&Value::Null));
    }

    #[test]
    fn exact_key_wins_and_null_means_default() {
        let c: Conf =
            from_slice(br#"{"Name":"folded","name":"exact","isGateway":null,"list":null}"#)
                .expect("decodes");
        assert_eq!(c.name, "exact");
        assert!(!c.is_gateway);
        assert!(c.list.is_empty());
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(from_slice::<Conf>(br#"{"isGateway":"yes"}"#).is_err());
        assert!(from_slice::<Conf>(br#"[1]"#).is_err());
    }
}
